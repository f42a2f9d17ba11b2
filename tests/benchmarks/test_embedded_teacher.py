import json

from tests.benchmarks import load_benchmark
from tests.conftest import TINY_EMBEDDED


def test_builds_into_a_folder_of_its_own_resumes_and_can_set_the_reference(small_corpus, tmp_path, monkeypatch):
    mod = load_benchmark("embedded_teacher")
    reference = tmp_path / "PROVENANCE.json"
    monkeypatch.setattr(mod, "REFERENCE", reference)
    dest, args = tmp_path / "t", [f"out={tmp_path / 'run'}", f"data={small_corpus}", *TINY_EMBEDDED]
    prov = mod.main(["--dest", str(dest), *args])
    assert json.loads((dest / "PROVENANCE.json").read_text()) == prov and not reference.exists()
    assert prov["command"] == f"python benchmarks/embedded_teacher.py --dest {dest} " + " ".join(args)
    # out= keeps the training folder: a second call resumes the finished training, same weights
    assert (tmp_path / "run" / "teacher").is_dir()
    again = mod.main(["--dest", str(dest), "--set-reference", *args])
    assert again["sha256"] == prov["sha256"] and json.loads(reference.read_text()) == again
