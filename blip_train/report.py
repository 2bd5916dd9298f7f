"""The before/after report: what the base model and the fine-tuned model say about the same frames.

    report/index.html     self-contained page: headline figures, metric table, loss curves, a card per frame
    report/captions.png   grid of frames with the reference, base and fine-tuned captions, and the metric table
    report/loss.png       training and validation loss, validation CIDEr and attribute accuracy per step
"""

from __future__ import annotations

import base64
import html
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from blip_train.attributes import ATTRIBUTE_KEYS, detect_attribute, labelled_categories, mentioned_categories
from blip_train.datasets.bdd100k import image_path
from blip_train.datasets.records import UNDEFINED

BEFORE_COLOR = "#c0392b"
AFTER_COLOR = "#1e7b4f"
REFERENCE_COLOR = "#34495e"
ATTRIBUTE_NAMES = {"timeofday": "time of day", "weather": "weather", "scene": "scene"}


def pick_samples(frames: Sequence, count: int) -> list[int]:
    """Frame indices covering as many (time of day, weather) combinations as possible, in split order."""
    chosen: list[int] = []
    seen: set[tuple[str, str]] = set()
    for index, frame in enumerate(frames):
        key = (frame.timeofday, frame.weather)
        if key not in seen:
            seen.add(key)
            chosen.append(index)
        if len(chosen) == count:
            return chosen
    rest = [i for i in range(len(frames)) if i not in set(chosen)]
    return chosen + rest[:count - len(chosen)]


def _thumbnail(path: Path, width: int = 480) -> np.ndarray:
    """RGB thumbnail of a frame at its own aspect ratio; a grey placeholder when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_2)
    if image is None:
        return np.full((width * 9 // 16, width, 3), 128, np.uint8)
    height = round(image.shape[0] * width / image.shape[1])
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _verdicts(caption: str, frame) -> list[tuple[str, bool | None]]:
    """(label, correct) per attribute, and for the labelled object classes (None: not scored)."""
    out = []
    for key in ATTRIBUTE_KEYS:
        reference = getattr(frame, key)
        if reference == UNDEFINED:
            continue
        out.append((f"{ATTRIBUTE_NAMES[key]}: {reference}", detect_attribute(caption, key) == reference))
    if frame.has_object_labels:
        labelled, mentioned = labelled_categories(frame), mentioned_categories(caption)
        if labelled or mentioned:
            found = len(labelled & mentioned)
            out.append((f"objects {found}/{len(labelled)}", labelled == mentioned))
    return out


def _metric_rows(after: dict, before: dict) -> list[tuple[str, float | None, float | None, float | None]]:
    """(name, before, after, majority-class rate) for the table."""
    rows = [(f"{ATTRIBUTE_NAMES[key]} accuracy", before[key]["accuracy"], after[key]["accuracy"],
             after[key]["majority_rate"]) for key in ATTRIBUTE_KEYS]
    rows.append(("object-mention recall", before["objects"]["recall"], after["objects"]["recall"], None))
    rows.append(("object-mention precision", before["objects"]["precision"], after["objects"]["precision"], None))
    rows.extend((name, before["captioning"].get(name), value, None) for name, value in after["captioning"].items())
    return rows


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def read_log(log_file: str | Path | None) -> list[dict]:
    if not log_file or not Path(log_file).is_file():
        return []
    records = []
    for line in Path(log_file).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def plot_loss(records: Sequence[dict], out_file: Path) -> Path | None:
    """Loss (train and validation) and validation scores against optimizer steps; None without a log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    val = [r for r in records if r.get("kind") == "val"]
    if not train:
        return None
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110)
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], color="#2c7fb8", lw=1.2, label="train")
    if val:
        ax_loss.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", color="#e6550d", ms=4, lw=1.2,
                     label="validation")
    ax_loss.set(title="Caption loss (cross-entropy per token)", xlabel="optimizer step", ylabel="loss")
    ax_loss.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    def plain(value: float, _) -> str:  # "0.4" rather than "4e-01"; label only a few minor ticks
        mantissa = round(value / 10 ** np.floor(np.log10(value)), 6) if value > 0 else 0
        return f"{value:g}" if mantissa in (1, 2, 3, 5) else ""

    ax_loss.yaxis.set_major_formatter(FuncFormatter(plain))
    ax_loss.yaxis.set_minor_formatter(FuncFormatter(plain))
    ax_loss.grid(alpha=0.3, which="both")
    ax_loss.legend(frameon=False)
    if val:
        steps = [r["step"] for r in val]
        for key, label, color in (("timeofday_accuracy", "time-of-day acc.", "#1b9e77"),
                                  ("weather_accuracy", "weather acc.", "#7570b3"),
                                  ("scene_accuracy", "scene acc.", "#d95f02"),
                                  ("object_recall", "object recall", "#888888")):
            values = [r.get(key) for r in val]
            if any(v is not None for v in values):
                ax_score.plot(steps, values, "o-", ms=3, lw=1.2, label=label, color=color)
        ax_score.set(ylim=(0, 1.02), xlabel="optimizer step", ylabel="accuracy / recall",
                     title="Validation during training")
        ax_cider = ax_score.twinx()
        ax_cider.plot(steps, [r.get("CIDEr") for r in val], "s--", ms=3, lw=1.2, color="#e7298a", label="CIDEr")
        ax_cider.set_ylabel("CIDEr", color="#e7298a")
        ax_cider.tick_params(axis="y", colors="#e7298a")
        lines = ax_score.get_legend_handles_labels()
        extra = ax_cider.get_legend_handles_labels()
        ax_score.legend(lines[0] + extra[0], lines[1] + extra[1], frameon=False, fontsize=8, loc="lower right")
        ax_score.grid(alpha=0.3)
    else:
        ax_score.axis("off")
        ax_score.text(0.5, 0.5, "no validation records", ha="center", va="center", color="#777")
    fig.tight_layout()
    fig.savefig(out_file)
    plt.close(fig)
    return out_file


#: Contact-sheet geometry, in inches and points: a card is a frame with its three caption blocks beside it.
CARD_WIDTH, IMAGE_WIDTH, SHEET_MARGIN = 9.4, 3.6, 0.25
IMAGE_HEIGHT = IMAGE_WIDTH * 9 / 16
WRAP_CHARS, LINE_INCHES, CAPTION_POINTS, MAX_CAPTION_LINES = 74, 0.16, 8.5, 5


def plot_grid(split, indices: Sequence[int], after: Sequence[str], before: Sequence[str], after_metrics: dict,
              before_metrics: dict, names: tuple[str, str], out_file: Path, columns: int = 2) -> Path:
    """Frames with their reference, base and fine-tuned captions, and the metric table underneath.

    Laid out in inches: each row is as tall as its longest caption block, so long captions never overlap.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = [_caption_block(split.captions[index], before[index], after[index], names) for index in indices]
    rows = [blocks[i:i + columns] for i in range(0, len(blocks), columns)]
    row_heights = [max(IMAGE_HEIGHT + 0.3, *(sum(1.45 + len(lines) for _, lines, _ in block) * LINE_INCHES + 0.2
                                              for block in row)) for row in rows]
    table_rows = _metric_rows(after_metrics, before_metrics)
    title_height, table_height = 0.7, 0.26 * (len(table_rows) + 1) + 0.5
    width, height = CARD_WIDTH * columns + 2 * SHEET_MARGIN, title_height + sum(row_heights) + table_height
    fig = plt.figure(figsize=(width, height), dpi=100)

    def at(x: float, y: float) -> tuple[float, float]:  # inches from the top-left corner -> figure fraction
        return x / width, 1 - y / height

    fig.text(*at(width / 2, 0.38), f"Captions before ({names[1]}) and after ({names[0]}) fine-tuning",
             ha="center", va="center", fontsize=15, fontweight="bold", color="#222")
    top = title_height
    for row_number, (row, row_height) in enumerate(zip(rows, row_heights, strict=True)):
        for column, block in enumerate(row):
            frame = split.frames[indices[row_number * columns + column]]
            _draw_card(fig, at, (width, height), split, frame, block, SHEET_MARGIN + column * CARD_WIDTH, top)
        top += row_height
    _draw_metric_table(fig, table_rows, names, height, table_height)
    fig.savefig(out_file)
    plt.close(fig)
    return out_file


def _caption_block(reference: str, before: str, after: str, names: tuple[str, str]) -> list[tuple[str, list, str]]:
    """(label, wrapped lines, colour) for the reference, base and fine-tuned captions of one frame; long ones cut."""
    block = []
    for label, text, color in (("reference", reference, REFERENCE_COLOR),
                               (f"before · {names[1]}", before, BEFORE_COLOR),
                               (f"after · {names[0]}", after, AFTER_COLOR)):
        lines = textwrap.wrap(text or "(empty caption)", WRAP_CHARS)
        if len(lines) > MAX_CAPTION_LINES:
            lines = lines[:MAX_CAPTION_LINES]
            lines[-1] = lines[-1][:WRAP_CHARS - 1] + "…"
        block.append((label, lines, color))
    return block


def _draw_card(fig, at, size: tuple[float, float], split, frame, block, left: float, top: float) -> None:
    """One frame's thumbnail, its attributes and its caption block, with the card's top-left corner at (left, top)."""
    width, height = size
    x0, y0 = at(left, top + 0.25 + IMAGE_HEIGHT)
    ax = fig.add_axes((x0, y0, IMAGE_WIDTH / width, IMAGE_HEIGHT / height))
    ax.imshow(_thumbnail(image_path(split.root, split.split, frame.name)))
    ax.set_axis_off()
    fig.text(*at(left, top + 0.12), f"{frame.timeofday} · {frame.weather} · {frame.scene}", fontsize=8.5,
             color="#666", va="center")
    x, y = left + IMAGE_WIDTH + 0.2, top + 0.1
    for label, lines, color in block:
        fig.text(*at(x, y), label, fontsize=8, fontweight="bold", color=color, va="top")
        y += LINE_INCHES * 1.05
        fig.text(*at(x, y), "\n".join(lines), fontsize=CAPTION_POINTS, color="#222", va="top", linespacing=1.32)
        y += LINE_INCHES * (len(lines) + 0.4)


def _draw_metric_table(fig, table_rows, names: tuple[str, str], height: float, table_height: float) -> None:
    """The before/after/majority metric table along the bottom of the sheet."""
    ax_table = fig.add_axes((0.18, 0.2 / height, 0.64, (table_height - 0.45) / height))
    ax_table.set_axis_off()
    cells = [[name, _fmt(b), _fmt(a), _fmt(m)] for name, b, a, m in table_rows]
    table = ax_table.table(cellText=cells, colLabels=["metric", f"before ({names[1]})", f"after ({names[0]})",
                                                      "majority class"],
                           loc="center", cellLoc="center", colLoc="center", bbox=(0, 0, 1, 1))
    table.auto_set_font_size(False)
    table.set_fontsize(9.5)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("#dddddd")
        if r == 0:
            cell.set_facecolor("#34495e")
            cell.set_text_props(color="white", fontweight="bold")
        elif c == 2:
            cell.set_text_props(color=AFTER_COLOR, fontweight="bold")
        elif c == 1:
            cell.set_text_props(color=BEFORE_COLOR)
        if r and r % 2 == 0:
            cell.set_facecolor("#f6f7f9")


def _data_uri(image: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 82])
    if not ok:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode()


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#2c3e50;color:#fff;padding:22px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.8}main{padding:20px 32px;max-width:1400px}
h2{font-size:17px;margin:28px 0 10px}.figures{display:flex;gap:14px;flex-wrap:wrap}
.figure{background:#fff;border-radius:8px;padding:12px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08);min-width:150px}
.figure .v{font-size:26px;font-weight:700;color:#1e7b4f}.figure .b{color:#c0392b;font-size:13px}
.figure .m{color:#777;font-size:12px}table{border-collapse:collapse;background:#fff;font-size:14px}
td,th{padding:6px 14px;border-bottom:1px solid #eee;text-align:right}th{background:#34495e;color:#fff}
td:first-child,th:first-child{text-align:left}td.after{color:#1e7b4f;font-weight:600}td.before{color:#c0392b}
img.wide{max-width:100%;background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(620px,1fr));gap:14px}
.card{background:#fff;border-radius:8px;display:flex;gap:12px;padding:10px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card img{width:280px;height:158px;object-fit:cover;border-radius:4px}.card .t{font-size:13px;flex:1}
.lbl{font-size:11px;font-weight:700;text-transform:uppercase;letter-spacing:.03em;margin-top:6px}
.ref{color:#34495e}.bef{color:#c0392b}.aft{color:#1e7b4f}.meta{color:#777;font-size:12px}
.chip{display:inline-block;font-size:11px;padding:1px 7px;border-radius:9px;margin:2px 3px 0 0}
.ok{background:#e3f4ea;color:#1e7b4f}.bad{background:#fbe5e2;color:#c0392b}
footer{color:#888;font-size:12px;padding:20px 32px}
"""


def _chips(verdicts: list[tuple[str, bool | None]]) -> str:
    return "".join(f'<span class="chip {"ok" if ok else "bad"}">{"✓" if ok else "✗"} {html.escape(label)}</span>'
                   for label, ok in verdicts)


def write_html(out_file: Path, split, indices: Sequence[int], after: Sequence[str], before: Sequence[str],
               after_metrics: dict, before_metrics: dict, names: tuple[str, str], grid: Path,
               loss: Path | None) -> Path:
    e = html.escape
    figures = []
    for key in ATTRIBUTE_KEYS:
        figures.append((f"{ATTRIBUTE_NAMES[key]} accuracy", after_metrics[key]["accuracy"],
                        before_metrics[key]["accuracy"], after_metrics[key]["majority_rate"]))
    figures.append(("CIDEr", after_metrics["captioning"]["CIDEr"], before_metrics["captioning"]["CIDEr"], None))
    figures.append(("BLEU-4", after_metrics["captioning"]["BLEU-4"], before_metrics["captioning"]["BLEU-4"], None))
    figure_html = "".join(
        f'<div class="figure"><div>{e(name)}</div><div class="v">{_fmt(a)}</div>'
        f'<div class="b">before: {_fmt(b)}</div>'
        + (f'<div class="m">majority class: {_fmt(m)}</div>' if m is not None else "") + "</div>"
        for name, a, b, m in figures)
    table = "".join(f'<tr><td>{e(name)}</td><td class="before">{_fmt(b)}</td><td class="after">{_fmt(a)}</td>'
                    f"<td>{_fmt(m)}</td></tr>" for name, b, a, m in _metric_rows(after_metrics, before_metrics))
    cards = []
    for index in indices:
        frame = split.frames[index]
        thumb = _data_uri(_thumbnail(image_path(split.root, split.split, frame.name), width=400))
        cards.append(
            f'<div class="card"><img src="{thumb}" alt="{e(frame.name)}"><div class="t">'
            f'<div class="meta">{e(frame.name)} · {e(frame.timeofday)} · {e(frame.weather)} · {e(frame.scene)}</div>'
            f'<div class="lbl ref">reference</div><div>{e(split.captions[index])}</div>'
            f'<div class="lbl bef">before · {e(names[1])}</div><div>{e(before[index] or "(empty)")}</div>'
            f"<div>{_chips(_verdicts(before[index], frame))}</div>"
            f'<div class="lbl aft">after · {e(names[0])}</div><div>{e(after[index] or "(empty)")}</div>'
            f"<div>{_chips(_verdicts(after[index], frame))}</div></div></div>")
    notes = sorted(set(after_metrics.get("notes", [])))
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>BLIP before/after fine-tuning</title><style>{_CSS}</style></head><body>
<header><h1>BLIP captions before and after fine-tuning</h1>
<p>{after_metrics['frames']} frames of {e(str(split.root))} ({e(split.split)}) ·
after: {e(after_metrics['model'])} · before: {e(before_metrics['model'])}</p></header><main>
<h2>Headline figures</h2><div class="figures">{figure_html}</div>
<h2>All metrics</h2><table><tr><th>metric</th><th>before</th><th>after</th><th>majority class</th></tr>{table}</table>
<p class="meta">Attribute accuracy: the caption states the labelled value (scored by blip_train.attributes over frames
whose label is defined). Majority class: the share of the most common label value, what always saying it would
score. Caption metrics: pycocoevalcap against {after_metrics.get('references_per_frame', 1)} reference phrasings
per frame, {e(str(after_metrics.get('tokenizer')))} tokenizer.</p>
{f'<h2>Training curves</h2><img class="wide" src="{e(loss.name)}" alt="loss curves">' if loss else ''}
<h2>Frames</h2><div class="cards">{''.join(cards)}</div>
<h2>As one picture</h2><img class="wide" src="{e(grid.name)}" alt="caption grid">
</main><footer>{'<br>'.join(e(n) for n in notes)}</footer></body></html>
"""
    out_file.write_text(page, encoding="utf-8")
    return out_file


def write_report(out_dir: str | Path, split, after: Sequence[str], before: Sequence[str], after_metrics: dict,
                 before_metrics: dict, log_file: str | Path | None = None, samples: int = 12,
                 names: tuple[str, str] = ("fine-tuned", "base")) -> dict[str, str | None]:
    """Write index.html, captions.png and (with a training log) loss.png; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    indices = pick_samples(split.frames, samples)
    grid = plot_grid(split, indices[:8], after, before, after_metrics, before_metrics, names,
                     out_dir / "captions.png")
    loss = plot_loss(read_log(log_file), out_dir / "loss.png")
    page = write_html(out_dir / "index.html", split, indices, after, before, after_metrics, before_metrics, names,
                      grid, loss)
    return {"html": str(page), "grid": str(grid), "loss": str(loss) if loss else None}
