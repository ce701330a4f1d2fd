"""The paper's tables from this library's benchmark results, beside the published reference numbers.

Reads every ``*.json`` report in ``--results`` (default ``benchmarks/results/``) written by ``fer.py``,
``verification.py``, ``reconstruction.py`` and ``disentangle.py`` (other JSON files are ignored; unreadable ones are
listed), and prints markdown tables laid out like the paper's:

* FER accuracy: RAF-DB, AffectNet, AffectNet with head pose over 30 and over 45 degrees (one column each, plus any
  labelled-folder dataset), one row per (weights, probe protocol);
* verification accuracy, mean +- std over 10 folds: LFW, SLLFW, one row per (weights, protocol);
* SynthFaces depth (SIDE, MAD) of the model and of Unsup3D's two baselines on the same images;
* SynthFaces disentanglement (identity retrieval and expression probe per feature set).

Each table is followed by published reference numbers with their provenance (the papers cited), and the
differences (this library minus the reference, in points) wherever a result and a reference share a column.
Nothing is invented: a column or a row without a result says "no result yet", a reference that was never
published for a column says "n/a". The markdown goes to stdout and, with ``--output``, to a file (atomic)::

    python benchmarks/tables.py
    python benchmarks/tables.py --results benchmarks/results --output benchmarks/results/tables.md
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness import ScriptError, reports_errors, run

from latentface.fileio import write_atomic

NO_RESULT = "no result yet"
NOT_PUBLISHED = "n/a"


@dataclass(frozen=True)
class Reference:
    """A published number set.

    Attributes:
        method: the method the numbers are for.
        values: column -> value (accuracies in %, SIDE in units of 1e-2, MAD in degrees).
        provenance: where the numbers come from, and how far to trust them.
    """

    method: str
    values: dict[str, float]
    provenance: str


FER_COLUMNS = {("rafdb", None): "RAF-DB", ("affectnet", None): "AffectNet",
               ("affectnet", "pose-30"): "AffectNet pose > 30°", ("affectnet", "pose-45"): "AffectNet pose > 45°"}
"""(dataset, subset) -> column of the FER table, in the paper's order."""
VERIFICATION_COLUMNS = {"lfw": "LFW", "sllfw": "SLLFW"}

FACECYCLE = ("Chang et al., Learning Facial Representations from the Cycle-consistency of Face, ICCV 2021: "
             "linear protocol at 64x64")
FER_REFERENCES = (
    Reference("FaceCycle (ICCV 2021)", {"RAF-DB": 71.01},
              FACECYCLE),
    Reference("FAb-Net", {"RAF-DB": 66.72}, "as reported in the FaceCycle paper (ICCV 2021)"),
    Reference("TCAE", {"RAF-DB": 65.32}, "as reported in the FaceCycle paper (ICCV 2021)"),
)
VERIFICATION_REFERENCES = (
    Reference("FaceCycle (ICCV 2021)", {"LFW": 73.72}, FACECYCLE),
)
UNSUP3D = ("Wu et al., Unsupervised Learning of Probably Symmetric Deformable 3D Objects, CVPR 2020, Table 2 "
           "(BFM synthetic faces; values as recorded here, not re-checked against the paper)")
DEPTH_REFERENCES = (
    Reference("Unsup3D", {"SIDE": 0.793, "MAD": 16.51},
              UNSUP3D),
    Reference("Unsup3D baseline: constant depth", {"SIDE": 2.723, "MAD": 43.34},
              UNSUP3D),
    Reference("Unsup3D baseline: mean GT depth", {"SIDE": 1.990, "MAD": 23.26},
              UNSUP3D),
    Reference("Unsup3D baseline: supervised", {"SIDE": 0.410, "MAD": 10.78},
              UNSUP3D),
)
PAPER_CLAIMS = {
    "fer": ("LatentFace paper (arXiv 2309.08273): +3.75 points on RAF-DB and +3.35 on AffectNet over the previous "
            "best self-supervised method; its absolute values are not recorded here, so they are not shown."),
    "verification": ("LatentFace paper: best self-supervised results on LFW and SLLFW; absolute values not recorded "
                     "here, so not shown. FaceCycle's other verification number (CPLFW 58.52) has no "
                     "benchmark here."),
}
DISENTANGLE_ROWS = ("raw_texture", "raw_shape", "raw_both", "identity_texture", "identity_shape", "identity_both",
                    "expression_texture", "expression_shape", "expression_both", "light", "pose", "fer")


@dataclass
class Results:
    """The reports found, by benchmark, each as ``(file name, report)``, and the files that could not be used."""

    fer: list[tuple[str, dict[str, Any]]]
    verification: list[tuple[str, dict[str, Any]]]
    reconstruction: list[tuple[str, dict[str, Any]]]
    disentangle: list[tuple[str, dict[str, Any]]]
    unreadable: list[tuple[str, str]]


def load_results(folder: Path) -> Results:
    """Every benchmark report in `folder` (``*.json``, sorted by name).

    Raises:
        FileNotFoundError: `folder` is not a folder.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {str(folder)!r} does not exist")
    found = Results([], [], [], [], [])
    for path in sorted(folder.glob("*.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            found.unreadable.append((path.name, str(err)))
            continue
        kind = report.get("benchmark") if isinstance(report, dict) else None
        if kind in ("fer", "verification", "reconstruction", "disentangle"):
            if not isinstance(report.get("results"), dict) or not isinstance(report.get("settings"), dict):
                found.unreadable.append((path.name, "no 'results' or 'settings' object"))
                continue
            getattr(found, kind).append((path.name, report))
    return found


# ------------------------------------------------------------------------------------------------ formatting


def _num(value: float | None, digits: int = 2) -> str:
    return NO_RESULT if value is None else f"{value:.{digits}f}"


def _signed(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align_first: int = 1) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" * align_first + "---:|" * (len(header) - align_first)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _reference_rows(references: Sequence[Reference], columns: Sequence[str], digits: int = 2) -> list[list[str]]:
    return [[f"{ref.method} (reference)"] + [_num(ref.values.get(c), digits) if c in ref.values else NOT_PUBLISHED
                                             for c in columns] for ref in references]


def _provenance(references: Sequence[Reference]) -> list[str]:
    return [f"- {ref.method}: " + ", ".join(f"{c} {v:g}" for c, v in ref.values.items())
            + f". Source: {ref.provenance}." for ref in references]


def _grid(entries: Sequence[tuple[tuple[str, ...], str, float, str]]) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Rows of (row key, {column: (value, cell text, file)}) from (row key, column, value, cell text + file) entries;
    a second result for a taken cell opens another row with the same key."""
    rows: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    for key, column, value, cell in entries:
        target = next((cells for k, cells in rows if k == key and column not in cells), None)
        if target is None:
            target = {}
            rows.append((key, target))
        target[column] = (value, cell)
    return rows


def _differences(rows: Sequence[tuple[str, dict[str, Any]]], references: Sequence[Reference],
                 columns: Sequence[str]) -> list[str]:
    table = []
    for label, cells in rows:
        for column in columns:
            if column not in cells:
                continue
            for ref in references:
                if column in ref.values:
                    value = cells[column][0]
                    table.append([label, column, f"{value:.2f}", ref.method, f"{ref.values[column]:.2f}",
                                  _signed(value - ref.values[column])])
    if not table:
        return ["No result shares a column with a reference number yet: no difference to show."]
    return _table(["result", "column", "this library", "reference", "reference value", "difference (points)"], table,
                  align_first=2)


# --------------------------------------------------------------------------------------------------- tables


def fer_table(reports: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """The FER table (accuracy %), its references and differences."""
    columns = dict(FER_COLUMNS)
    entries = []
    for name, r in reports:
        d, s = r.get("data", {}), r["settings"]
        key = (d.get("dataset"), d.get("subset"))
        if key not in columns:
            columns[key] = (f"{d.get('name', key[0])}" + (f" {key[1]}" if key[1] else "")
                            + (" (folder)" if key[0] == "folder" else ""))
        acc = 100 * r["results"]["accuracy"]
        entries.append(((s.get("weights", "?"), s.get("protocol", "?")), columns[key], acc,
                        f"{name}, data {d.get('root', '?')}"))
    labels = list(columns.values())
    grid = _grid(entries)
    rows, ours = [], []
    for (weights, protocol), cells in grid:
        label = f"this library: {weights}, {protocol} probe"
        ours.append((label, cells))
        rows.append([label] + [_num(cells[c][0]) if c in cells else NO_RESULT for c in labels])
    if not grid:
        rows.append(["this library"] + [NO_RESULT] * len(labels))
    rows += _reference_rows(FER_REFERENCES, labels)
    lines = ["## Facial expression recognition (linear probe, accuracy %)", ""]
    lines += _table(["method"] + labels, rows)
    lines += ["", "Released probe: the best *test* epoch is reported (the released code's quirk); clean probe: "
              "learning rate and epoch selected on a validation split of the training set.", ""]
    if grid:
        lines += ["Result files: " + "; ".join(f"{cells[c][1]} ({c})" for _, cells in grid for c in cells) + ".", ""]
    lines += ["References:"] + _provenance(FER_REFERENCES) + [f"- {PAPER_CLAIMS['fer']}", ""]
    lines += ["Differences:", ""] + _differences(ours, FER_REFERENCES, labels)
    return lines


def verification_table(reports: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """The verification table (accuracy %, mean ± std over folds), its references and differences."""
    entries = []
    for name, r in reports:
        s, dataset = r["settings"], r.get("data", {}).get("dataset")
        column = VERIFICATION_COLUMNS.get(dataset, str(dataset))
        for protocol, res in r["results"].items():
            label = protocol.upper() + (" (released quirk)" if protocol == "b" and s.get("released_quirk") else "")
            text = f"{100 * res['mean_accuracy']:.2f} ± {100 * res['std_accuracy']:.2f}"
            entries.append(((s.get("weights", "?"), label), column, 100 * res["mean_accuracy"],
                            f"{name}, data {r.get('data', {}).get('root', '?')}|{text}"))
    labels = list(VERIFICATION_COLUMNS.values())
    labels += sorted({e[1] for e in entries} - set(labels))
    grid = _grid(entries)
    rows, ours = [], []
    for (weights, protocol), cells in grid:
        label = f"this library: {weights}, protocol {protocol}"
        ours.append((label, cells))
        rows.append([label] + [cells[c][1].split("|", 1)[1] if c in cells else NO_RESULT for c in labels])
    if not grid:
        rows.append(["this library"] + [NO_RESULT] * len(labels))
    rows += _reference_rows(VERIFICATION_REFERENCES, labels)
    lines = ["## Face verification (10 folds, accuracy % mean ± std)", ""]
    lines += _table(["method"] + labels, rows)
    lines += ["", "Protocol A: cosine similarity, threshold chosen on the nine training folds (2023 code). Protocol B: "
              "linear pair classifier (2024 code); its released quirk trains each epoch on one batch of 128 pairs.",
              ""]
    if grid:
        lines += ["Result files: " + "; ".join(f"{cells[c][1].split('|', 1)[0]} ({c})" for _, cells in grid
                                               for c in cells) + ".", ""]
    lines += ["References:"] + _provenance(VERIFICATION_REFERENCES) + [f"- {PAPER_CLAIMS['verification']}", ""]
    lines += ["Differences (of the mean accuracy):", ""] + _differences(ours, VERIFICATION_REFERENCES, labels)
    return lines


def depth_table(reports: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """SynthFaces SIDE / MAD of each reconstruction report, the BFM references, and model - baseline differences."""
    lines = ["## SynthFaces depth reconstruction (SIDE x10^-2, MAD degrees; lower is better)", ""]
    rows, diffs = [], []
    for name, r in reports:
        res, weights = r["results"], r["settings"].get("weights", "?")
        summary = {m: (100 * res[m]["side"]["mean"], 100 * res[m]["side"]["std"], res[m]["mad"]["mean"],
                       res[m]["mad"]["std"]) for m in ("model", "mean_depth", "constant_depth") if m in res}
        labels = {"model": f"this library: {weights}", "mean_depth": "mean GT depth (baseline, same images)",
                  "constant_depth": "constant depth (baseline, same images)"}
        for method, (side, side_std, mad, mad_std) in summary.items():
            rows.append([labels[method], f"{name} ({r.get('num_images', '?')} SynthFaces images)",
                         f"{side:.3f} ± {side_std:.3f}", f"{mad:.2f} ± {mad_std:.2f}"])
        if "model" in summary:
            for base in ("mean_depth", "constant_depth"):
                if base in summary:
                    diffs.append([f"{weights} ({name})", labels[base],
                                  _signed(summary["model"][0] - summary[base][0], 3),
                                  _signed(summary["model"][2] - summary[base][2])])
    if not rows:
        rows.append(["this library", "", NO_RESULT, NO_RESULT])
    rows += [[f"{ref.method} (reference)", ref.provenance, f"{ref.values['SIDE']:.3f}", f"{ref.values['MAD']:.2f}"]
             for ref in DEPTH_REFERENCES]
    lines += _table(["method", "source", "SIDE (x10^-2)", "MAD (deg)"], rows, align_first=2)
    lines += ["", "The references are on Unsup3D's BFM synthetic faces, not on SynthFaces: no difference is computed "
              "against them. The same-image baselines are the comparison that holds.", ""]
    if diffs:
        lines += ["Differences (model minus baseline on the same images; negative is better):", ""]
        lines += _table(["result", "baseline", "SIDE (x10^-2)", "MAD (deg)"], diffs, align_first=2)
    else:
        lines.append("Differences: no reconstruction result yet.")
    return lines


def disentangle_table(reports: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Identity retrieval and expression probe per feature set, for each disentangle report."""
    lines = ["## SynthFaces disentanglement (identity retrieval top-1 %, expression probe accuracy %)", ""]
    if not reports:
        return lines + [f"This library: {NO_RESULT}."]
    header = ["features"]
    columns = []
    for _, r in reports:
        weights = r["settings"].get("weights", "?")
        header += [f"{weights}: retrieval top-1", f"{weights}: expression acc."]
        columns.append(r["results"])
    rows = []
    for feature in DISENTANGLE_ROWS:
        row = [feature]
        for res in columns:
            item = res.get("features", {}).get(feature)
            if item is None:
                row += ["skipped" if feature in res.get("skipped", []) else NO_RESULT] * 2
                continue
            ret, probe = item.get("retrieval") or {}, item.get("probe") or {}
            row += [_num(None if ret.get("top1") is None else 100 * ret["top1"]),
                    _num(None if probe.get("accuracy") is None else 100 * probe["accuracy"])]
        rows.append(row)
    chance = ["chance"]
    for res in columns:
        c = res.get("chance", {})
        top1 = c.get("retrieval", {}).get("top1")
        majority = c.get("probe", {}).get("majority_accuracy")
        chance += [_num(None if top1 is None else 100 * top1), _num(None if majority is None else 100 * majority)]
    rows.append(chance)
    lines += _table(header, rows)
    lines += ["", "No reference numbers: SynthFaces is this library's own data. The paper's ablation finds shape "
              "latents help FER most and texture latents help verification most (qualitative, no values recorded).",
              "Files: " + ", ".join(name for name, _ in reports) + "."]
    return lines


def render(results: Results, folder: Path) -> str:
    """All tables as one markdown document."""
    count = sum(len(x) for x in (results.fer, results.verification, results.reconstruction, results.disentangle))
    lines = ["# Benchmark tables", "",
             f"From {count} result file(s) in `{folder}`. Accuracies in %, differences in points. "
             f"\"{NO_RESULT}\": no result file for that row or column; \"{NOT_PUBLISHED}\": the reference did not "
             "publish that column.", ""]
    for part in (fer_table(results.fer), verification_table(results.verification),
                 depth_table(results.reconstruction), disentangle_table(results.disentangle)):
        lines += part + [""]
    if results.unreadable:
        lines += ["Unreadable result files (ignored):"] + [f"- {n}: {why}" for n, why in results.unreadable] + [""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = harness.new_parser(__doc__)
    p.add_argument("--results", type=Path, default=harness.RESULTS,
                   help="folder of JSON reports (default: benchmarks/results/)")
    p.add_argument("--output", type=Path, default=None, help="also write the markdown here (default: stdout only)")
    return p.parse_args(argv)


@reports_errors()
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = load_results(args.results)
    except FileNotFoundError as err:
        raise ScriptError(str(err)) from err
    text = render(results, args.results)
    print(text)
    if args.output is not None:
        write_atomic(args.output, text.encode("utf-8"))
        print(f"Tables written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main)
