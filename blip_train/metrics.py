"""Caption metrics as the COCO caption benchmark computes them (pycocoevalcap), plus the driving-attribute scores.

BLEU-1..4, METEOR, ROUGE-L and CIDEr run on PTB-tokenised, lower-cased text (Stanford PTBTokenizer, Java). METEOR
and the PTB tokenizer need Java; without it the scores fall back to a plain Python tokenizer and METEOR is left out,
and the result says so. SPICE is never computed: it downloads Stanford CoreNLP on first use, which fails offline.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence

from blip_train.attributes import score_captions

SPICE_NOTE = "SPICE not computed: pycocoevalcap downloads Stanford CoreNLP for it on first use (fails offline)"
CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def java_available() -> bool:
    return shutil.which("java") is not None


def simple_tokenize(text: str) -> str:
    """Lower-case words without punctuation: close to what PTBTokenizer plus pycocoevalcap's filter leave."""
    return " ".join(_WORD.findall(text.lower()))


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the Java tools' progress chatter ("PTBTokenizer tokenized N tokens..."), which writes to fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tokenize(captions: dict[int, list[str]], use_ptb: bool) -> dict[int, list[str]]:
    if use_ptb:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        # One line per caption: newlines inside a caption would shift every later caption.
        wrapped = {key: [{"caption": c.replace("\n", " ")} for c in texts] for key, texts in captions.items()}
        with _quiet_stderr():
            return PTBTokenizer().tokenize(wrapped)
    return {key: [simple_tokenize(c) for c in texts] for key, texts in captions.items()}


def caption_metrics(references: Sequence[Sequence[str]], hypotheses: Sequence[str], meteor: bool = True,
                    ptb: bool = True) -> dict:
    """{"scores": {BLEU-1..4, METEOR, ROUGE-L, CIDEr}, "tokenizer": ..., "notes": [...]} for one caption per frame
    against one or more references per frame. Metrics that cannot run are None with a note saying why."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} captions for {len(references)} reference sets")
    notes = [SPICE_NOTE]
    if not hypotheses:
        return {"scores": dict.fromkeys(CAPTION_METRICS), "tokenizer": None, "notes": notes + ["no frames"]}
    have_java = java_available()
    if (ptb or meteor) and not have_java:
        notes.append("java not found: PTB tokenizer replaced by a Python one, METEOR not computed "
                     "(apt-get install default-jre-headless)")
    use_ptb = ptb and have_java
    gts = _tokenize({i: list(refs) for i, refs in enumerate(references)}, use_ptb)
    # An empty caption would give METEOR an empty segment; a lone placeholder word scores (almost) zero instead.
    res = _tokenize({i: [h if h.strip() else "<empty>"] for i, h in enumerate(hypotheses)}, use_ptb)
    res = {i: [h if h else "empty"] for i, (h,) in res.items()}
    scores: dict[str, float | None] = dict.fromkeys(CAPTION_METRICS)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, value in enumerate(bleu, start=1):
        scores[f"BLEU-{n}"] = float(value)
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if meteor and have_java:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            scores["METEOR"] = float(scorer.compute_score(gts, res)[0])
        finally:
            scorer.meteor_p.kill()
            scorer.meteor_p.wait()
    elif not meteor:
        notes.append("METEOR not computed (disabled)")
    return {"scores": scores, "tokenizer": "ptb" if use_ptb else "python", "notes": notes}


def evaluate_captions(hypotheses: Sequence[str], references: Sequence[Sequence[str]], frames: Sequence,
                      meteor: bool = True, ptb: bool = True) -> dict:
    """Caption metrics and driving-attribute scores of captions for `frames`: the body of metrics.json."""
    text = caption_metrics(references, hypotheses, meteor=meteor, ptb=ptb)
    return {"frames": len(hypotheses), "captioning": text["scores"], "tokenizer": text["tokenizer"],
            "notes": text["notes"], **score_captions(hypotheses, frames)}

