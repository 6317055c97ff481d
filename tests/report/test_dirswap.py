"""auditq.report.dirswap.swap_in, the one directory swap behind --out (reports) and the remediated checkpoint: the target
always holds the complete old or the complete new directory — after a failed rename, an exception, or a real
Ctrl-C (SIGINT to this process) landing between the two renames."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from auditq.remediate.output import commit
from auditq.report import dirswap
from auditq.report.dirswap import swap_in


class Pressed(BaseException):
    pass


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _dirs(tmp_path: Path, old: bool = True) -> tuple[Path, Path]:
    staging, target = tmp_path / ".out.tmp-1", tmp_path / "out"
    staging.mkdir()
    (staging / "report.json").write_text("new")
    if old:
        target.mkdir()
        (target / "report.json").write_text("old")
        (target / "report.sarif").write_text("stale")
    return staging, target


@pytest.fixture
def raising_handler():
    """auditq.entry's behaviour: the first Ctrl-C raises."""
    def handler(signum, frame):
        raise Pressed()
    previous = signal.signal(signal.SIGINT, handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _replace_with(monkeypatch, on_call: int, action, after: bool = False):
    """os.replace that runs `action` on its `on_call`-th call, before the rename (or right after it)."""
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == on_call and not after:
            action()
        real(src, dst)
        if len(calls) == on_call and after:
            action()

    monkeypatch.setattr(dirswap.os, "replace", replace)
    return calls


@pytest.mark.parametrize("old", [True, False])
def test_swap_replaces_the_target_as_a_whole(tmp_path, old):
    staging, target = _dirs(tmp_path, old)
    assert swap_in(staging, target) == target.resolve()
    assert _tree(target) == {"report.json": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging, no old copy left


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt, MemoryError])
def test_a_failed_second_rename_puts_the_old_directory_back(tmp_path, monkeypatch, error):
    staging, target = _dirs(tmp_path)

    def fail():
        raise error("rename failed")
    _replace_with(monkeypatch, 2, fail)  # call 1: target aside; call 2: staging in
    with pytest.raises(error):
        swap_in(staging, target)
    assert _tree(target) == {"report.json": "old", "report.sarif": "stale"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.tmp-1", "out"]  # staging left for the caller


@pytest.mark.parametrize("swap", [swap_in, commit], ids=["swap_in", "remediate.commit"])
@pytest.mark.parametrize("old", [True, False])
def test_ctrl_c_between_the_renames_leaves_the_target_as_it_was(tmp_path, monkeypatch, raising_handler, swap, old):
    staging, target = _dirs(tmp_path, old)
    before = _tree(target) if old else None

    def press():  # a real SIGINT right after the first rename; Python runs handlers between bytecodes
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10000))
    calls = _replace_with(monkeypatch, 1, press, after=True)
    with pytest.raises(Pressed):  # delivered to the previous handler once the target is as it was
        swap(staging, target)
    assert len(calls) >= 2  # the swap went on after the press, then undid itself
    assert (_tree(target) if old else target.exists()) == (before if old else False)
    assert _tree(staging) == {"report.json": "new"}  # back where the caller's cleanup removes it
    assert signal.getsignal(signal.SIGINT) is not None and not [p for p in tmp_path.iterdir() if ".old-" in p.name]


def test_ctrl_c_while_the_old_copy_is_deleted_is_delivered_after_the_new_one_is_in(tmp_path, monkeypatch,
                                                                                   raising_handler):
    staging, target = _dirs(tmp_path)
    real = dirswap.shutil.rmtree

    def rmtree(path, ignore_errors=False):
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10000))
        real(path, ignore_errors=ignore_errors)
    monkeypatch.setattr(dirswap.shutil, "rmtree", rmtree)
    with pytest.raises(Pressed):
        swap_in(staging, target)
    assert _tree(target) == {"report.json": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old copy fully deleted first


def test_the_handler_is_restored(tmp_path, raising_handler):
    handler = signal.getsignal(signal.SIGINT)
    staging, target = _dirs(tmp_path)
    swap_in(staging, target)
    assert signal.getsignal(signal.SIGINT) is handler
