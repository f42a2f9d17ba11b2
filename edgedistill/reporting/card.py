"""The model card (README.md of an exported run): Hugging Face model-card metadata, how the
model was made, the measured table and how to use it. Plain dicts in: the run's report and
its recipe written out (`config.to_dict`)."""

from __future__ import annotations

from pathlib import Path

from edgedistill.reporting.tables import pct, stream_section, variant_table


def model_card(report: dict, recipe: dict, num_keywords: int, version: str, teacher_steps: int | None = None,
               teacher_about: str | None = None) -> str:
    """The card's Markdown.

    Args:
        report: the benchmark report (`recipes.benchmark.benchmark`).
        recipe: the run's config as a dict (`to_dict(RunConfig)`).
        num_keywords: labels of the KWS head.
        version: edgedistill's version.
        teacher_steps: the pretrained teacher's fine-tuning steps (`plan(cfg).teacher.finetune.steps`).
        teacher_about: what the pretrained teacher is, where its name does not say (the embedded one).
    """
    students = [e for e in report["variants"] if e["variant"].startswith("student")]
    baseline = [e for e in report["variants"] if e["variant"] == "scratch fp32"]
    d, ft, tt = recipe["distill"], recipe["finetune"], recipe["teacher_training"]
    data = recipe["data"]
    meta = ["---", "library_name: onnxruntime", "pipeline_tag: audio-classification",
            "tags: [keyword-spotting, speaker-verification, knowledge-distillation, edgedistill, onnx]",
            "model-index:", "- name: edgedistill student", "  results:"]
    for e in students:  # a task that could not be scored (e.g. one speaker in the split) is left out
        for key, task, metric, label in (("kws_accuracy", "keyword spotting", "accuracy", "KWS accuracy"),
                                         ("sv_eer", "speaker verification", "eer", "EER")):
            if e[key] is not None:
                meta += [f"  - task: {{type: audio-classification, name: {task}}}",
                         f"    dataset: {{name: '{data}', type: custom, split: {report['split']}}}",
                         f"    metrics: [{{type: {metric}, value: {e[key]:.4f}, name: '{e['variant']} {label}'}}]"]
    meta.append("---")
    if recipe["teacher"] == "train":
        teacher = ("a HuBERT-shaped teacher trained in this run from random weights "
                   + (f"on its own corpus `{tt['data']}` " if tt.get("data") else "")
                   + f"({tt['layers']} x {tt['hidden']}, at least the student's steps, then early stopping on "
                   f"'{tt['val_split']}' with patience {tt['patience']}, at most {tt['steps']} steps)")
    else:
        teacher = f"`{recipe['teacher']}`" + (f" ({teacher_about})" if teacher_about else "")
    if recipe["teacher"] != "train" or tt.get("data"):  # pretrained, or trained elsewhere as if it were
        teacher += (f", then fine-tuned on `{data}` with the student's recipe for {teacher_steps} steps (the student's "
                    "steps on that data: the teacher row is an upper bound; the student distils from it before "
                    "that fine-tuning)")
    text = (f", with text-informed distillation from `{d['text_teacher']}`." if d["text_teacher"] else ".")
    body = ["", "# edgedistill student: keyword spotting + speaker verification", "",
            f"A `{d['student']['preset']}` student (one backbone, a KWS head and a speaker-embedding head) for "
            f"{num_keywords} keywords, exported to ONNX for onnxruntime on CPUs.", "",
            "## How it was made", "",
            f"1. Teacher: {teacher}.",
            f"2. Layer-wise distillation ({d['objective']}, L1 + log-sigmoid cosine) for {d['steps']} steps on "
            f"`{recipe['distill_data'] or data}`{text}",
            f"3. Joint KWS + SV fine-tuning for {ft['steps']} steps (AAM softmax s={ft['aam_scale']}, "
            f"m={ft['aam_margin']}), selected on the '{ft['val_split']}' split.",
            f"4. ONNX export (parity-checked against PyTorch) and quantization: "
            f"{', '.join(recipe['export']['quantize']) or 'none'}.",
            *([f"5. Baseline: the same shape from random weights with the same fine-tuning (no distillation): "
               f"KWS {pct(baseline[0]['kws_accuracy'])}, EER {pct(baseline[0]['sv_eer'])} ('scratch fp32')."]
              if baseline else []),
            "", f"## Measured on the '{report['split']}' split ({report['clips']} clips)", "",
            *variant_table(report["variants"], ("params", "file MB", "KWS accuracy", "KWS retained", "SV EER",
                                                "EER / teacher", "minDCF (0.01)", "p50 ms")),
            *stream_section(report.get("streams"), report["split"], report["data"], "###"), "",
            f"Latency: onnxruntime, {report['threads']} thread(s), {report['latency_audio_s']:g} s of audio, on "
            f"{report['machine']['cpu']}. Command: `{report['command']}`. edgedistill {version}, {report['date']}.", "",
            "## Use", "", "```bash", "pip install -r requirements.txt",
            f"python infer.py {Path(students[-1]['path']).name} clip.wav [other.wav]", "```", "",
            "Input: mono 16 kHz audio, at least 25 ms. See DEVICE.md for the Python API.", "",
            "## Limitations", "",
            "Numbers are for the data above only; speakers and recording conditions outside it will differ. "
            "The SV threshold in the metadata was chosen at the validation EER.", ""]
    return "\n".join(meta + body)
