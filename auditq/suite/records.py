"""Probe suites: forget / retain / holdout splits as JSONL, plus optional settings in suite.toml.

See probes/README.md for the format. Every problem is reported as one line naming the
file and line, with exit code 2.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import tomllib

from auditq.errors import InputError
from auditq.regular_file import present, read_bytes, read_text
from auditq.safe_parse import loads_json, loads_toml

SPLITS = ("forget", "retain", "holdout")


@dataclass(frozen=True)
class TextRecord:
    id: str
    text: str


@dataclass(frozen=True)
class QARecord:
    id: str
    question: str
    answer: str
    #: TOFU's truth ratio (auditq.probes.tofu): the answer said another way, and wrong answers in that form
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()


@dataclass(frozen=True)
class MCQRecord:
    """A multiple-choice question (the `mcq` probe): `answer` is the index of the correct choice."""

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class Split:
    name: str
    texts: tuple[TextRecord, ...]
    qa: tuple[QARecord, ...]
    mcq: tuple[MCQRecord, ...] = ()


@dataclass(frozen=True)
class SuiteSettings:
    """Probe settings a suite may pin; CLI flags override them."""

    prefix_tokens: int = 32
    max_new_tokens: int = 64
    answer_tokens: int = 32
    qa_template: str = "Question: {question}\nAnswer:"
    mink_k: float = 0.4
    #: also score each forget / holdout QA pair as one text (prompt + answer) in membership inference
    mia_qa: bool = False
    calibration: str | None = None


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    forget: Split
    retain: Split
    holdout: Split
    settings: SuiteSettings = field(default_factory=SuiteSettings)
    content_hash: str = ""

    def split(self, name: str) -> Split:
        return {"forget": self.forget, "retain": self.retain, "holdout": self.holdout}[name]

    def calibration_texts(self) -> tuple[str, ...]:
        """Generic calibration text for GPTQ-like formats (never the forget set by default)."""
        if not self.settings.calibration:
            return tuple(r.text for r in self.retain.texts)
        path = self.path / self.settings.calibration
        try:
            text = read_text(path, "suite calibration file")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read calibration file: {exc}") from None
        return tuple(line for line in lines(text) if line.strip())


def bundled_suite_dir(name: str = "demo") -> Path:
    """The demo suite shipped with auditq (top-level probes/ in a checkout, auditq/_suites in a wheel)."""
    package = Path(__file__).resolve().parents[1]  # auditq/
    for candidate in (package / "_suites" / name, package.parent / "probes" / name):
        if candidate.is_dir():
            return candidate
    raise InputError(f"bundled suite {name!r} is missing from this installation")


def resolve_suite(value: Path | str | None) -> Path:
    """The suite directory of --suite: a directory as given, else the bundled suite of that name ("demo-mcq"),
    else the path as given (load_suite then refuses it); None is the bundled demo suite."""
    if value is None:
        return bundled_suite_dir()
    path = Path(value)
    if not path.is_dir() and path.name == str(value) and not str(value).startswith("."):
        try:
            return bundled_suite_dir(str(value))
        except InputError:
            pass
    return path


def lines(text: str) -> list[str]:
    """Lines split on "\n" only (a trailing "\r" dropped). str.splitlines() also splits on U+2028, U+2029,
    U+0085, \v, \f, \x1c-\x1e, which JSON allows raw inside a string: it would cut a valid record in two."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_surrogates(obj: dict, where: str) -> None:
    """A JSON escape such as \\ud800 without its pair decodes to a lone surrogate, which is no Unicode text:
    the tokenizer refuses it (UnicodeEncodeError) only when the probe runs, after the models are loaded."""
    for key in ("id", "text", "question", "answer"):
        value = obj.get(key)
        found = _SURROGATE.search(value) if isinstance(value, str) else None
        if found:
            raise InputError(f"{where}: '{key}' holds a lone surrogate \\u{ord(found.group()):04x} at character "
                             f"{found.start()} (an unpaired \\uD800-\\uDFFF escape is not text; fix the record)")


def _read_split(path: Path, name: str) -> Split:
    if not present(path, "suite split"):
        raise InputError(f"{path}: missing {name} split (expected {name}.jsonl)")
    data = read_bytes(path, "suite split")
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8") from None
    texts: list[TextRecord] = []
    qa: list[QARecord] = []
    mcq: list[MCQRecord] = []
    seen_ids: dict[str, int] = {}
    for number, line in enumerate(lines(raw), start=1):
        if not line.strip():
            continue
        try:
            obj = loads_json(line, f"{path}:{number}")
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        _check_surrogates(obj, f"{path}:{number}")
        record_id = str(obj.get("id", f"{name}-{number}"))
        if record_id in seen_ids:
            raise InputError(f"{path}:{number}: duplicate id {record_id!r} (first on line {seen_ids[record_id]}); "
                             "ids must be unique within a split")
        seen_ids[record_id] = number
        if "text" in obj:
            if not isinstance(obj["text"], str) or not obj["text"].strip():
                raise InputError(f"{path}:{number}: 'text' must be a non-empty string")
            texts.append(TextRecord(record_id, obj["text"]))
        elif "choices" in obj:
            mcq.append(_mcq_record(obj, record_id, f"{path}:{number}"))
        elif "question" in obj and "answer" in obj:
            if not all(isinstance(obj[k], str) and obj[k].strip() for k in ("question", "answer")):
                raise InputError(f"{path}:{number}: 'question' and 'answer' must be non-empty strings")
            qa.append(QARecord(record_id, obj["question"], obj["answer"], *_tofu_fields(obj, f"{path}:{number}")))
        else:
            raise InputError(f"{path}:{number}: a record needs 'text', 'question' and 'answer', "
                             "or 'question', 'choices' and 'answer'")
    if not texts and not qa and not mcq:
        raise InputError(f"{path}: {name} split is empty")
    return Split(name, tuple(texts), tuple(qa), tuple(mcq))


def _mcq_record(obj: dict, record_id: str, where: str) -> MCQRecord:
    """A multiple-choice record: a question, >= 2 distinct non-empty choices, the answer's 0-based index."""
    question, choices, answer = obj.get("question"), obj["choices"], obj.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: 'question' must be a non-empty string")
    if (not isinstance(choices, list) or len(choices) < 2
            or not all(isinstance(c, str) and c.strip() for c in choices)):
        raise InputError(f"{where}: 'choices' must be a list of at least 2 non-empty strings")
    if len(set(choices)) != len(choices):
        raise InputError(f"{where}: 'choices' has a duplicate choice")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise InputError(f"{where}: 'answer' = {answer!r}: expected the index of the correct choice, "
                         f"0 to {len(choices) - 1}")
    return MCQRecord(record_id, question, tuple(choices), answer)


def _tofu_fields(obj: dict, where: str) -> tuple[str | None, tuple[str, ...]]:
    """The optional TOFU fields of a QA record, checked here (the light stage) so a bad one exits 2."""
    para = obj.get("paraphrased_answer")
    if para is not None and (not isinstance(para, str) or not para.strip()):
        raise InputError(f"{where}: 'paraphrased_answer' must be a non-empty string")
    perturbed = obj.get("perturbed_answers")
    if perturbed is None:
        return para, ()
    if not isinstance(perturbed, list) or not perturbed or \
            not all(isinstance(a, str) and a.strip() for a in perturbed):
        raise InputError(f"{where}: 'perturbed_answers' must be a non-empty list of non-empty strings")
    return para, tuple(perturbed)


def _read_settings(path: Path) -> tuple[str, str, SuiteSettings]:
    if not present(path, "suite settings"):
        return path.parent.name, "", SuiteSettings()
    try:
        data = loads_toml(read_text(path, "suite settings"), path)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: invalid TOML: {exc}") from None
    meta = data.get("suite", {})
    probes = data.get("probes", {})
    for table, value in (("suite", meta), ("probes", probes)):
        if not isinstance(value, dict):
            raise InputError(f"{path}: {table} = {value!r}: expected a [{table}] table")
    known = {f.name: f.type for f in fields(SuiteSettings)}
    unknown = sorted(set(probes) - set(known))
    if unknown:
        raise InputError(f"{path}: unknown [probes] setting(s): {', '.join(unknown)}")
    from auditq.suite.settings import check_settings

    check_settings(path, probes)
    from auditq.schema import check_table

    check_table(probes, SuiteSettings, f"{path}: [probes]")  # every field, strictly: mia_qa = "false" is no bool
    settings = SuiteSettings(**probes)
    return str(meta.get("name", path.parent.name)), str(meta.get("description", "")), settings


def content_hash(directory: Path) -> str:
    """sha256 over the suite's files (names and bytes), stable across machines."""
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in {".jsonl", ".toml", ".txt"}):
        digest.update(file.name.encode() + b"\0" + read_bytes(file, "suite file") + b"\0")
    return digest.hexdigest()


def load_suite(directory: Path | str) -> Suite:
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"suite {directory} is not a directory")
    name, description, settings = _read_settings(directory / "suite.toml")
    splits = {split: _read_split(directory / f"{split}.jsonl", split) for split in SPLITS}
    if not splits["forget"].texts:
        raise InputError(f"{directory / 'forget.jsonl'}: forget split has no text records (needed for VerbMem and MIA)")
    if not splits["holdout"].texts:
        raise InputError(f"{directory / 'holdout.jsonl'}: holdout split has no text records (needed for MIA)")
    from auditq.suite.overlap import check_forget_holdout_disjoint

    check_forget_holdout_disjoint(directory, splits["forget"], splits["holdout"])
    return Suite(directory, name, description, splits["forget"], splits["retain"], splits["holdout"],
                 settings, content_hash(directory))
