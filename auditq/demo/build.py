"""Build the demo's four checkpoints once, cache them, and hand back their paths.

- base     trained on forget + retain (the model before unlearning)
- retrain  the same recipe on retain only (the gold standard: never saw the forget set)
- fragile  a PLANTED failure: GA + 5·retain-NLL on nn.Linear weights only, projected after
           every step into the int4 per-output-channel RTN cells of base's weights. Forgotten
           at full precision and at 8 bits; `rtn4` restores base's integer codes exactly.
- honest   the same GA + 5·retain-NLL on the same nn.Linear weights with the same stopping
           rule, WITHOUT the projection: a model this small must move its weights by ~0.3 of an
           int4 step to forget (a third of the int4 codes change), so it stays unlearned at 4 bits.

Both unlearning runs have two phases, each checked every 5 steps: (1) GA on the forget QA
pairs until no forget answer is produced exactly any more; (2) GA on all forget data (bios,
prose, QA) until the Min-K% (k=0.4) AUC of forget vs holdout text has come down to the retrain
model's (PrivLeak at most +10%). One joint phase cannot hit both targets: text likelihood falls
faster than the last answers, so by the time the answers are gone the model is over-unlearned
(AUC ~0.35 against retrain's ~0.6, a PrivLeak failure at full precision).

Why a cache: the build costs a few CPU minutes, the demo should be instant afterwards. The
cache directory name carries the auditq version and a hash of the suite bytes, the build
settings and the build code, so any change rebuilds. A build is written into a temporary
directory next to its final place and renamed, so a crash never leaves a half-built cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import auditq
from auditq.demo import tokenizer as demo_tokenizer
from auditq.demo import train
from auditq.demo.settings import DEFAULT_SETTINGS, BuildSettings, LogFn
from auditq.demo.unlearned import Measures, StopRule, fmt_em, mink_auc, unlearned_models
from auditq.suite.records import bundled_suite_dir, load_suite

MANIFEST = "build.json"


@dataclass(frozen=True)
class DemoModels:
    """Paths of a finished demo build (each model dir holds safetensors + config + tokenizer)."""

    root: Path
    base: Path
    fragile: Path
    honest: Path
    retrain: Path
    suite: Path

    @classmethod
    def at(cls, root: Path) -> DemoModels:
        return cls(root, root / "base", root / "fragile", root / "honest", root / "retrain", root / "suite")

    def manifest(self) -> dict:
        """What the build recorded: settings, steps, timings, QA exact match and Min-K AUC per model."""
        return json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The directory that holds demo builds: argument, else $AUDITQ_CACHE_DIR, else the user cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("AUDITQ_CACHE_DIR"):
        return Path(os.environ["AUDITQ_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("auditq"))


#: the code that decides the demo models' weights (a folder stands for every .py file in it)
_CODE_FILES = ("demo/build.py", "demo/settings.py", "demo/unlearned.py", "demo/train.py", "demo/tokenizer.py",
               "unlearning", "formats/rtn.py", "probes/mia.py")


def cache_key(suite_dir: Path, settings: BuildSettings = DEFAULT_SETTINGS) -> str:
    """Hash of the suite bytes, the settings and the code that builds (12 hex digits)."""
    from auditq.suite.records import content_hash

    digest = hashlib.sha256()
    digest.update(content_hash(suite_dir).encode())
    digest.update(json.dumps(asdict(settings), sort_keys=True, default=str).encode())
    package = Path(auditq.__file__).resolve().parent
    for name in _CODE_FILES:
        target = package / name
        for path in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def build_demo(cache_dir: Path | str | None = None, force: bool = False, log: LogFn | None = None,
               settings: BuildSettings = DEFAULT_SETTINGS) -> DemoModels:
    """Return the cached demo models, building them first if needed (or if `force`)."""
    say = log or (lambda message: None)
    suite_dir = bundled_suite_dir("demo")
    root = cache_root(cache_dir)
    final = root / f"demo-{auditq.__version__}-{cache_key(suite_dir, settings)}"
    if (final / MANIFEST).is_file() and not force:
        return DemoModels.at(final)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        say(f"building the demo models in {final} (one-time, a few minutes on a CPU)")
        _build_into(staging, suite_dir, settings, say)
        _publish(staging, final, force)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return DemoModels.at(final)


def _publish(staging: Path, final: Path, force: bool) -> None:
    """Atomically move a finished build into place; a concurrent finished build wins."""
    if final.exists():
        if not force and (final / MANIFEST).is_file():
            return
        trash = final.with_name(final.name + f".old-{os.getpid()}")
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(staging, final)
    except OSError:
        if not (final / MANIFEST).is_file():
            raise


def _build_into(out: Path, suite_dir: Path, settings: BuildSettings, say: LogFn) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than two on a shared CPU
    try:
        _build(out, suite_dir, settings, say)
    finally:
        torch.set_num_threads(threads)


def _build(out: Path, suite_dir: Path, settings: BuildSettings, say: LogFn) -> None:
    started = time.perf_counter()
    shutil.copytree(suite_dir, out / "suite", ignore=shutil.ignore_patterns("*.md", "__pycache__"))
    suite = load_suite(out / "suite")
    template = suite.settings.qa_template
    tok = demo_tokenizer.build_tokenizer(suite)
    pairs = {name: [(r.question, r.answer) for r in suite.split(name).qa] for name in ("forget", "retain")}
    timings: dict[str, float] = {}
    checks: dict[str, dict[str, float]] = {}

    def exact_match(model) -> dict[str, float]:
        return {f"{name}_qa_em": train.qa_exact_match(model, tok, pairs[name], template) for name in pairs}

    def trained(splits: tuple[str, ...], label: str):
        t0 = time.perf_counter()
        say(f"training {label} on {' + '.join(splits)} ({settings.train.epochs} epochs)")
        model = train.new_model(settings.model, tok, settings.seed)
        train.train_lm(model, tok, train.suite_items(suite, splits), settings.train, log=say)
        timings[label] = time.perf_counter() - t0
        train.save_model(model, tok, out / label)
        checks[label] = exact_match(model)
        say(f"  {label}: {fmt_em(checks[label])} ({timings[label]:.0f}s)")
        return model

    base = trained(("forget", "retain"), "base")
    retrain = trained(("retain",), "retrain")

    forget_texts, retain_texts = train.split_texts(suite, "forget"), train.split_texts(suite, "retain")
    forget_answers = [train.qa_text(q, a, template) for q, a in pairs["forget"]]
    # the same member / non-member texts the audit's MIA probe scores (with mia_qa: QA pairs as texts too)
    from auditq.probes.mia import member_records

    members = [text for _, text in member_records(suite, "forget", template)]
    nonmembers = [text for _, text in member_records(suite, "holdout", template)]

    def auc(model) -> float:
        return mink_auc(model, tok, members, nonmembers, settings.mink_k)

    aucs = {"base": auc(base), "retrain": auc(retrain)}
    stop = StopRule(tok, pairs, template, members, nonmembers, settings, checks["base"]["retain_qa_em"],
                    aucs["retrain"], say)
    measures = Measures(exact_match, auc, timings, checks, aucs)
    steps = unlearned_models(out, base, tok, (forget_answers, forget_texts, retain_texts), settings, stop, say,
                             measures)
    _write_manifest(out, settings, steps, measures, started, say)


def _write_manifest(out: Path, settings: BuildSettings, steps: dict[str, list[int]], measures: Measures,
                    started: float, say: LogFn) -> None:
    manifest = {
        "auditq_version": auditq.__version__,
        "torch_version": torch.__version__,
        "settings": asdict(settings),
        "unlearning_steps": steps,
        "qa_exact_match": measures.checks,
        "mink_auc_forget_vs_holdout": {k: round(v, 4) for k, v in measures.aucs.items()},
        "seconds": {**{k: round(v, 1) for k, v in measures.timings.items()},
                    "total": round(time.perf_counter() - started, 1)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    say(f"demo models built in {manifest['seconds']['total']:.0f}s")


