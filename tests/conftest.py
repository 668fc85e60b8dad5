"""Shared test settings.

The runner's fixture notebooks are executed by tests/test_course.py through papermill; nbval must not collect them
as notebooks of their own (`make test` passes --nbval-lax for the course notebooks).
"""

import os

import pytest

collect_ignore_glob = ["course_fixtures/*"]

# Figures made by tests never replace the published ones in figures/.
os.environ.setdefault("S2S_FIGURES_DIR", os.path.join(os.path.dirname(__file__), "..", "build", "test-figures"))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """How `make test` (``-n auto``) shares the tests among pytest-xdist workers: a test file's tests stay on one
    worker (its module fixtures are built once), and so do all the course notebooks under nbval, in order, since
    each reads what the ones before it wrote into the run directory. (xdist's own ``xdist_group`` marks do not take
    effect under pytest 9, which no longer lets a plugin rename a test.) `make test` collects the notebooks first, so
    their group, the longest, starts at once."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFileNotebooksTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "course-notebooks" if path.endswith(".ipynb") else path

    return ByFileNotebooksTogether(config, log)


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test runs PyTorch on one thread: the machine's two cores are shared (and CI's runs are comparable)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def codec_manifests(tmp_path_factory):
    """Train and val manifests of real synthesized Telugu speech at 16 kHz (eight short utterances)."""
    import soundfile as sf

    from s2slib.audio import resample
    from s2slib.data import synth
    from s2slib.data.manifest import Utterance, write_manifest

    root = tmp_path_factory.mktemp("codec_data")
    lines = ["నమస్కారం, ఎలా ఉన్నారు?", "ఈ రోజు వాతావరణం చాలా బాగుంది.", "మీ పేరు ఏమిటి?", "రేపు బడికి సెలవు."]
    utts = []
    for i, (line, voice) in enumerate(zip(lines * 2, ["Arjun", "Priya", "Ravi", "Lakshmi"] * 2)):
        wav = resample(synth.synthesize(line, voice), synth.SAMPLE_RATE, 16000)
        path = root / f"u{i}.wav"
        sf.write(path, wav, 16000, subtype="PCM_16")
        utts.append(Utterance(f"u{i}", str(path), len(wav) / 16000, 16000, voice, line, "test"))
    return write_manifest(root / "train.jsonl", utts[:6]), write_manifest(root / "val.jsonl", utts[6:])


def _check_exact_resume(make_trainer, root, stop_after: int) -> None:
    """Train straight through in ``root/a``; in ``root/b`` stop after ``stop_after`` steps (as if killed right after
    that checkpoint), build the trainer again and finish. ``make_trainer(out_dir)`` builds a trainer; the two runs
    must end with identical weights, codebooks and EMA statistics, and identical logs (but for wall times)."""
    import torch

    straight = make_trainer(root / "a")
    straight.fit(progress=False)
    first = make_trainer(root / "b")
    first.fit(progress=False, stop_after=stop_after)
    del first
    resumed = make_trainer(root / "b")
    assert resumed.step == stop_after
    resumed.fit(progress=False)
    a, b = straight.codec.state_dict(), resumed.codec.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(straight.history.rows) == strip(resumed.history.rows)


@pytest.fixture
def check_exact_resume():
    """:func:`_check_exact_resume`, for the tests of every trainer built on the course's codec trainer."""
    return _check_exact_resume
