"""The `auditq` command line (typer + rich). Errors are one line on stderr with a distinct exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from auditq import __version__
from auditq.errors import EXIT_MEASURE, AuditqError, InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Audit whether an unlearned LLM stays unlearned in the formats it is deployed in.")
err = Console(stderr=True)
out = Console()

DEFAULT_FORMATS = "fp,rtn8,rtn4"


def _split_list(values: list[str]) -> tuple[str, ...]:
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


class RichEvents:
    """Progress bars on stderr for quantizing and probing."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=err, transient=True, disable=quiet)

    def stage(self, description: str, total: int):
        self.progress.start()
        task = self.progress.add_task(description, total=total)
        self._task = task
        return lambda n=1: self.progress.advance(task, n)

    def note(self, message: str) -> None:
        if not self.quiet and hasattr(self, "_task"):
            self.progress.update(self._task, description=message)

    def close(self) -> None:
        self.progress.stop()


def _set_threads(threads: Optional[int]) -> None:
    import torch

    torch.set_num_threads(threads or max(1, min(4, os.cpu_count() or 1)))


def run_check(base: Path, unlearned: Path, *, retrain: Optional[Path], reference: Optional[Path], suite: Optional[Path],
              formats: tuple[str, ...], probes: tuple[str, ...], out_dir: Optional[Path], seed: int, batch_size: int,
              config_file: Optional[Path], thresholds: list[str], severities: list[str], allow_inconclusive: bool,
              trust_remote_code: bool, quiet: bool, settings: dict, artifacts: list[Path] = ()) -> int:
    """Shared by `check`, `demo` and `remediate`: run an audit, print it, write reports, return the exit code."""
    from auditq.config import load_config
    from auditq.pipeline import AuditRequest, run_audit
    from auditq.report import write_reports
    from auditq.report.samples import render_samples
    from auditq.report.terminal import print_report
    from auditq.suite import bundled_suite_dir

    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a directory")
    config = load_config(Path.cwd(), config_file, thresholds, severities)
    extra = tuple(_artifact_formats(artifacts))
    request = AuditRequest(
        base=base, unlearned=unlearned, retrain=retrain, reference=reference,
        suite=suite or bundled_suite_dir(), formats=formats, probes=probes, config=config, seed=seed,
        batch_size=batch_size, trust_remote_code=trust_remote_code, allow_inconclusive=allow_inconclusive,
        extra_formats=extra, **settings,
    )
    events = RichEvents(quiet)
    try:
        outcome = run_audit(request, events)
    finally:
        events.close()
    print_report(outcome.report, out)
    if out_dir is not None:
        paths = write_reports(out_dir, outcome.report, extra_files={"samples.jsonl": render_samples(outcome.runs)})
        out.print(f"reports written: {', '.join(str(p) for p in paths)}")
    return outcome.report.exit_code


def _artifact_formats(artifacts) -> list:
    formats = []
    for path in artifacts:
        if str(path).endswith(".gguf"):
            from auditq.formats.gguf import GGUFArtifact

            formats.append(GGUFArtifact.from_path(Path(path)))
        else:
            raise InputError(f"--artifact {path}: unsupported artifact (expected a .gguf file)")
    return formats


@app.command()
def check(
    base: Path = typer.Argument(..., help="Original model: a Hugging Face checkpoint dir with safetensors weights."),
    unlearned: Path = typer.Argument(..., help="Unlearned model, same architecture and tokenizer as BASE."),
    retrain: Optional[Path] = typer.Option(None, help="Model trained without the forget set: the gold reference."),
    reference: Optional[Path] = typer.Option(None, help="Reference model for the reference-loss attack (default: BASE in the same format)."),
    suite: Optional[Path] = typer.Option(None, help="Probe suite dir (default: the bundled demo suite)."),
    formats: list[str] = typer.Option([DEFAULT_FORMATS], "--formats", "-f", help="Comma-separated formats: fp, rtnN[:gG][:emb][:nohead], gguf:q4_0, ..."),
    probes: list[str] = typer.Option(["verbmem,knowmem,mia,utility"], "--probes", help="Comma-separated probes."),
    artifact: list[Path] = typer.Option([], help="An existing quantized file of the unlearned model (e.g. .gguf) to score as one more row."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Write report.json, samples.jsonl, report.md and junit.xml here."),
    seed: int = typer.Option(0, help="Seed for bootstrap intervals and any sampling."),
    batch_size: int = typer.Option(16, min=1, help="Sequences per forward pass."),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch CPU threads (default: min(4, cores))."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="auditq.toml to use instead of ./auditq.toml."),
    threshold: list[str] = typer.Option([], help="Override a threshold: CHECK=VALUE (forget_retention, recovery, privleak, utility)."),
    severity: list[str] = typer.Option([], help="Override a severity: CHECK=error|warn."),
    allow_inconclusive: bool = typer.Option(False, help="Do not fail the gate on INCONCLUSIVE verdicts."),
    trust_remote_code: bool = typer.Option(False, help="Allow custom model code from the checkpoint dirs (off by default)."),
    prefix_tokens: Optional[int] = typer.Option(None, help="VerbMem prompt length in tokens (suite default, else 32)."),
    max_new_tokens: Optional[int] = typer.Option(None, help="VerbMem continuation length (suite default, else 64)."),
    answer_tokens: Optional[int] = typer.Option(None, help="KnowMem answer length (suite default, else 32)."),
    mink_k: Optional[float] = typer.Option(None, help="Min-K% fraction k (default 0.4)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Quantize BASE and UNLEARNED to every format, probe them, and gate on the verdicts."""
    _set_threads(threads)
    code = run_check(base, unlearned, retrain=retrain, reference=reference, suite=suite, formats=_split_list(formats),
                     probes=_split_list(probes), out_dir=out_dir, seed=seed, batch_size=batch_size,
                     config_file=config_file, thresholds=threshold, severities=severity,
                     allow_inconclusive=allow_inconclusive, trust_remote_code=trust_remote_code, quiet=quiet,
                     settings={"prefix_tokens": prefix_tokens, "max_new_tokens": max_new_tokens,
                               "answer_tokens": answer_tokens, "mink_k": mink_k},
                     artifacts=artifact)
    raise typer.Exit(code)


@app.command()
def demo(
    unlearned: str = typer.Option("fragile", help="Which demo model to audit: fragile (the planted failure), honest, or retrain."),
    formats: list[str] = typer.Option([DEFAULT_FORMATS], "--formats", "-f", help="Comma-separated formats."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the four report files here."),
    rebuild: bool = typer.Option(False, help="Rebuild the cached demo models."),
    seed: int = typer.Option(0),
    threads: Optional[int] = typer.Option(None, min=1),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Build (once, cached) tiny demo models and audit the planted failure: forgotten at fp/rtn8, back at rtn4."""
    from auditq.demo.build import build_demo

    _set_threads(threads)
    choices = {"fragile", "honest", "retrain"}
    if unlearned not in choices:
        raise InputError(f"--unlearned must be one of {', '.join(sorted(choices))}")
    out.print(DEMO_EXPLANATION)
    models = build_demo(force=rebuild, log=(lambda m: None) if quiet else (lambda m: err.print(f"[dim]{m}[/]")))
    target = getattr(models, unlearned)
    out.print(f"auditing [bold]{unlearned}[/] model {target} against base {models.base} (retrain {models.retrain})")
    code = run_check(models.base, target, retrain=models.retrain, reference=None, suite=models.suite,
                     formats=_split_list(formats), probes=("verbmem", "knowmem", "mia", "utility"), out_dir=out_dir,
                     seed=seed, batch_size=16, config_file=None, thresholds=[], severities=[],
                     allow_inconclusive=False, trust_remote_code=False, quiet=quiet, settings={
                         "prefix_tokens": None, "max_new_tokens": None, "answer_tokens": None, "mink_k": None})
    raise typer.Exit(code)


DEMO_EXPLANATION = (
    "[bold]auditq demo[/] — the failure of Zhang et al. (ICLR 2025) on a 1M-parameter model.\n"
    "In a 7B model, unlearning moves weights by ~1e-4 of an int4 step, so 4-bit rounding maps the original and the\n"
    "unlearned weights onto the same codes and the forgotten data comes back. A model this small must move ~0.1 of a\n"
    "step to forget, so that would not happen by itself. The 'fragile' model simulates the large-model regime honestly:\n"
    "ordinary gradient-ascent + retain-loss unlearning, but after every step each Linear weight is projected back into\n"
    "the int4 round-to-nearest cell of the original weight. Expect PASS at fp and rtn8, FAIL (recovery) at rtn4."
)


@app.command()
def version() -> None:
    """Print the auditq version."""
    out.print(__version__)


def main() -> None:
    """Entry point: one-line errors with exit 2 (input) or 3 (could not measure), never a traceback.

    Usage errors are typer's own (exit 2); everything else is caught here.
    """
    try:
        app()
    except AuditqError as exc:
        err.print(f"auditq: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # an unexpected crash: still one line and exit 3
        if os.environ.get("AUDITQ_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        err.print(f"auditq: internal error: {type(exc).__name__}: {first} (set AUDITQ_DEBUG=1 for a traceback)",
                  highlight=False, markup=False, soft_wrap=True)
        sys.exit(EXIT_MEASURE)


if __name__ == "__main__":
    main()
