"""Build BLIP captioning models and processors from a config, offline.

Real users load `from_pretrained(path_or_hub_id)`; this module covers the other case: a BLIP built from scratch
(tests, the offline demo, benchmarks of the full-size architecture with random weights). Two transformers defaults
make such a model useless and are overridden here: `BlipTextConfig` defaults to 8 attention heads (the released
captioning models use 12 at hidden 768) and `BlipVisionConfig` to `initializer_range=1e-10`, which gives a
near-degenerate random vision tower.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessorPil,
    BlipProcessor,
)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DECODER_BOS_TOKEN = "[DEC]"
# BERT basic tokenisation splits these off words, so the vocabulary needs them as tokens of their own.
PUNCTUATION = tuple(".,;:!?'\"-()/")


@dataclass(frozen=True)
class BlipArchitecture:
    """Sizes of a BLIP captioning model built from scratch."""

    image_size: int = 384
    patch_size: int = 16
    vision_hidden: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    vision_intermediate: int = 3072
    text_hidden: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_intermediate: int = 3072
    max_position_embeddings: int = 512

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for name in ("vision", "text"):
            hidden, heads = getattr(self, f"{name}_hidden"), getattr(self, f"{name}_heads")
            if hidden % heads:
                raise ValueError(f"{name}_hidden {hidden} is not divisible by {name}_heads {heads}")


#: BLIP-base (Salesforce/blip-image-captioning-base): ViT-B/16 at 384 px + a 12-layer BERT-base decoder.
BLIP_BASE = BlipArchitecture()
#: The size transformers' own BLIP tests use; builds in milliseconds, for unit tests.
TINY = BlipArchitecture(
    image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=4, vision_intermediate=37,
    text_hidden=32, text_layers=2, text_heads=4, text_intermediate=37, max_position_embeddings=64,
)


def build_tokenizer(words: Iterable[str], out_dir: str | Path) -> BertTokenizer:
    """A lower-case BERT WordPiece tokenizer whose vocabulary is exactly `words` plus specials and punctuation.

    Written to `out_dir/vocab.txt` because BertTokenizer only builds from a file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab: list[str] = list(SPECIAL_TOKENS)
    seen = set(vocab)
    for word in (*PUNCTUATION, *(w.lower() for w in words)):
        if word and word not in seen:
            seen.add(word)
            vocab.append(word)
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": DECODER_BOS_TOKEN})
    return tokenizer


def build_processor(tokenizer: BertTokenizer, image_size: int) -> BlipProcessor:
    """BLIP's processor (resize to a square, CLIP mean/std) around `tokenizer`.

    The PIL image processor, BLIP's original one: the same numbers with or without torchvision installed (the
    torchvision variant resizes slightly differently), and no fallback warning where torchvision is absent.
    """
    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    return BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)


def blip_config(tokenizer: BertTokenizer, arch: BlipArchitecture = BLIP_BASE) -> BlipConfig:
    """A BlipConfig whose text side matches `tokenizer`: vocab size and bos ([DEC]) / sep / pad ids."""
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": arch.text_hidden,
        "encoder_hidden_size": arch.vision_hidden,
        "intermediate_size": arch.text_intermediate,
        "num_hidden_layers": arch.text_layers,
        "num_attention_heads": arch.text_heads,
        "max_position_embeddings": arch.max_position_embeddings,
        "bos_token_id": tokenizer.convert_tokens_to_ids(DECODER_BOS_TOKEN),
        "sep_token_id": tokenizer.sep_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {
        "hidden_size": arch.vision_hidden,
        "intermediate_size": arch.vision_intermediate,
        "num_hidden_layers": arch.vision_layers,
        "num_attention_heads": arch.vision_heads,
        "image_size": arch.image_size,
        "patch_size": arch.patch_size,
        "initializer_range": 0.02,
    }
    return BlipConfig(text_config=text_config, vision_config=vision_config)


def build_blip(
    words: Iterable[str], out_dir: str | Path, arch: BlipArchitecture = TINY, seed: int = 0
) -> tuple[BlipForConditionalGeneration, BlipProcessor]:
    """A randomly initialised BLIP captioner and its processor, both saved to `out_dir` (save_pretrained)."""
    import torch

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(words, out_dir)
    processor = build_processor(tokenizer, arch.image_size)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(blip_config(tokenizer, arch)).eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return model, processor
