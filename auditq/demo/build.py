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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import auditq
from auditq.demo import tokenizer as demo_tokenizer
from auditq.demo import train
from auditq.demo.train import ModelConfig, TrainConfig
from auditq.errors import MeasurementError
from auditq.suite.records import bundled_suite_dir, load_suite
from auditq.unlearning import unlearn as U
from auditq.unlearning.unlearn import UnlearnConfig

LogFn = Callable[[str], None]
MANIFEST = "build.json"


@dataclass(frozen=True)
class BuildSettings:
    """Every knob of the demo build; all of it goes into the cache key."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=60, lr=3e-3, shuffle_probability=0.3))
    # lr 6e-4, not 5e-5: with 5·retain-NLL pulling back, 5e-5 did not move forget QA at all in
    # 200 steps on this suite; the projection bounds the change anyway. max_steps is per phase.
    fragile: UnlearnConfig = field(default_factory=lambda: UnlearnConfig(
        forget_loss="ga", retain_loss="gdr", retain_weight=5.0, lr=6e-4, max_steps=200))
    fragile_bits: int = 4
    fragile_group_size: int | None = None  # per output channel, as the `rtn4` format groups
    honest: UnlearnConfig = field(default_factory=lambda: UnlearnConfig(
        forget_loss="ga", retain_loss="gdr", retain_weight=5.0, lr=6e-4, max_steps=200))
    stop_forget_em: float = 0.0       # phase 1 ends when forget QA exact match is at most this
    stop_auc_ratio: float = 1.10      # phase 2 ends when Min-K% AUC(forget vs holdout) <= this x retrain's
    min_retain_ratio: float = 0.7     # never accept retain QA EM below this share of base's
    check_every: int = 5
    mink_k: float = 0.4
    seed: int = 0


DEFAULT_SETTINGS = BuildSettings()


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
_CODE_FILES = ("demo/build.py", "demo/train.py", "demo/tokenizer.py", "unlearning", "formats/rtn.py", "probes/mia.py")


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
        say(f"  {label}: {_fmt(checks[label])} ({timings[label]:.0f}s)")
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
    stop = _StopRule(tok, pairs, template, members, nonmembers, settings, checks["base"]["retain_qa_em"],
                     aucs["retrain"], say)
    steps: dict[str, list[int]] = {}
    for label in ("fragile", "honest"):
        t0 = time.perf_counter()
        model, steps[label] = _unlearned(label, base, tok, forget_answers, forget_texts, retain_texts, settings,
                                         stop, say)
        timings[label] = time.perf_counter() - t0
        train.save_model(model, tok, out / label)
        checks[label] = exact_match(model)
        aucs[label] = auc(model)
        if label == "fragile":
            _check_planted_failure(base, model, settings)
        quantized = _fake_quantized(model, settings.fragile_bits, settings.fragile_group_size)
        qlabel = f"{label}_rtn{settings.fragile_bits}"
        checks[qlabel], aucs[qlabel] = exact_match(quantized), auc(quantized)
        say(f"  {label}: {_fmt(checks[label])}, Min-K AUC {aucs[label]:.2f}; at rtn{settings.fragile_bits}: "
            f"{_fmt(checks[qlabel])}, Min-K AUC {aucs[qlabel]:.2f} ({'+'.join(map(str, steps[label]))} steps, "
            f"{timings[label]:.0f}s)")

    manifest = {
        "auditq_version": auditq.__version__,
        "torch_version": torch.__version__,
        "settings": asdict(settings),
        "unlearning_steps": steps,
        "qa_exact_match": checks,
        "mink_auc_forget_vs_holdout": {k: round(v, 4) for k, v in aucs.items()},
        "seconds": {**{k: round(v, 1) for k, v in timings.items()}, "total": round(time.perf_counter() - started, 1)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    say(f"demo models built in {manifest['seconds']['total']:.0f}s")


Done = Callable[[float, float, float], bool]  # (forget QA EM, retain QA EM, Min-K AUC) -> phase over


class _StopRule:
    """When an unlearning phase is over: checked every `check_every` steps.

    Keeps the last state whose retain QA was acceptable and rolls back to it (ending the
    phase) if retain QA collapses below `min_retain_ratio` of base's.
    """

    def __init__(self, tok, pairs, template, members, nonmembers, settings: BuildSettings,
                 base_retain_em: float, retrain_auc: float, say: LogFn) -> None:
        self.tok, self.pairs, self.template = tok, pairs, template
        self.members, self.nonmembers = members, nonmembers
        self.settings, self.say = settings, say
        self.min_retain = settings.min_retain_ratio * base_retain_em
        self.max_auc = settings.stop_auc_ratio * retrain_auc

    def answers_gone(self, forget_em: float, retain_em: float, auc: float) -> bool:
        return forget_em <= self.settings.stop_forget_em

    def texts_unrecognisable(self, forget_em: float, retain_em: float, auc: float) -> bool:
        return auc <= self.max_auc

    def bind(self, model, done: Done) -> Callable[[int], bool]:
        last_good: dict[str, dict | None] = {"state": None}

        def should_stop(step: int) -> bool:
            if step % self.settings.check_every:
                return False
            forget_em = train.qa_exact_match(model, self.tok, self.pairs["forget"], self.template)
            retain_em = train.qa_exact_match(model, self.tok, self.pairs["retain"], self.template)
            auc = mink_auc(model, self.tok, self.members, self.nonmembers, self.settings.mink_k)
            self.say(f"  step {step}: forget QA EM {forget_em:.2f}, retain QA EM {retain_em:.2f}, "
                     f"Min-K AUC forget/holdout {auc:.2f}")
            if retain_em < self.min_retain:
                if last_good["state"] is not None:
                    model.load_state_dict(last_good["state"])
                    self.say("  retain QA collapsed: rolled back to the previous check")
                    return True
                return False
            last_good["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return done(forget_em, retain_em, auc)

        return should_stop


def _unlearned(label: str, base, tok, forget_answers, forget_texts, retain_texts, settings: BuildSettings,
               stop: _StopRule, say: LogFn):
    """GA + retain-NLL on a copy of base's nn.Linear weights, in the two phases of the module
    docstring; fragile also projects into base's RTN cells after every step."""
    config = settings.fragile if label == "fragile" else settings.honest
    model = _copy(base)
    after_step = None
    how = "unconstrained"
    if label == "fragile":
        originals = U.snapshot(U.linear_weights(model))
        how = f"projected into base's int{settings.fragile_bits} RTN cells after every step"

        def after_step(step: int, m) -> None:
            U.project_into_rtn_cells(m, originals, settings.fragile_bits, settings.fragile_group_size)

    say(f"unlearning {label} ({config.forget_loss.upper()} + {config.retain_weight:g}x "
        f"{config.retain_loss.upper()} on Linear weights, lr {config.lr:g}, {how})")
    phases = (("forget QA pairs, until no answer is exact", forget_answers, stop.answers_gone),
              ("all forget data, until Min-K AUC reaches retrain's", forget_texts, stop.texts_unrecognisable))
    steps = []
    for what, texts, done in phases:
        say(f" phase {len(steps) + 1}: {what}")
        result = U.unlearn(model, tok, texts, retain_texts, config, trainable=U.linear_weight_mask(model),
                           after_step=after_step, should_stop=stop.bind(model, done))
        steps.append(result.steps)
    model.eval()
    return model, steps


@torch.no_grad()
def mink_auc(model, tok, members: list[str], nonmembers: list[str], k: float = 0.4, batch_size: int = 32) -> float:
    """ROC AUC of Min-K% Prob (mean of the lowest max(1, floor(N·k)) token log-probs; higher =
    member) separating `members` from `nonmembers`, sequences encoded as the probes do (BOS + text)."""
    was_training = model.training
    model.eval()
    seqs = [list(tok(text).input_ids) for text in [*members, *nonmembers]]
    scores: list[float] = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start:start + batch_size]
        batch = U.make_batch(chunk, tok.pad_token_id)
        logp = torch.log_softmax(model(input_ids=batch.ids, attention_mask=batch.mask).logits[:, :-1].float(), -1)
        token_logp = logp.gather(-1, batch.ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        for row, seq in enumerate(chunk):
            values = token_logp[row, : len(seq) - 1].sort().values
            scores.append(float(values[: max(1, int(len(values) * k))].mean()))
    model.train(was_training)
    member_scores = torch.tensor(scores[: len(members)])
    other_scores = torch.tensor(scores[len(members):])
    wins = (member_scores[:, None] > other_scores[None, :]).double().sum()
    ties = (member_scores[:, None] == other_scores[None, :]).double().sum()
    return float((wins + 0.5 * ties) / (len(members) * len(nonmembers)))


def _check_planted_failure(base, fragile, settings: BuildSettings) -> None:
    """The fragile model's int-N codes must equal base's in every Linear weight, and nothing else may move."""
    from auditq.formats.rtn import rtn_quantize

    base_params = dict(base.named_parameters())
    linear = U.linear_weights(fragile)
    for name, param in fragile.named_parameters():
        if name in linear:
            same = torch.equal(rtn_quantize(param, settings.fragile_bits, settings.fragile_group_size),
                               rtn_quantize(base_params[name], settings.fragile_bits, settings.fragile_group_size))
        else:
            same = torch.equal(param, base_params[name])
        if not same:
            raise MeasurementError(f"demo build: the fragile model's {name} left its planted RTN cells")


def _copy(model):
    import copy

    return copy.deepcopy(model)


def _fake_quantized(model, bits: int, group_size: int | None):
    from auditq.formats.rtn import rtn_quantize

    clone = _copy(model)
    with torch.no_grad():
        for param in U.linear_weights(clone).values():
            param.copy_(rtn_quantize(param, bits, group_size))
    return clone


def _fmt(em: dict[str, float]) -> str:
    return ", ".join(f"{k.replace('_qa_em', '')} QA EM {v:.2f}" for k, v in em.items())
