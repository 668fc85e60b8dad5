"""Can fine-tuning make the laptop model say a few of its *training* answers, free-running?

Fine-tunes runs/laptop's pretrained model on the first N_SOURCES pairs (their training renditions), then prints the
teacher-forced accuracy per codebook and the free-running top-1 among the held-out candidates at four samplings.
TASK_JSON: AnswerTask fields (input_dropout, self_feed, ...) and "short": true to learn each answer's first sentence
rendered without jitter (what notebook 01's answer_sentences and agent_jitter now build).

usage: python experiments/answer_overfit.py OUT STEPS N_SOURCES [LR] [TASK_JSON]
   e.g. python experiments/answer_overfit.py /tmp/of 400 16 5e-4 '{"short": true}'
Measured 2026-11-22 (README, notebook 06) on the laptop run's conversations as they were before commit 53e789a
(rebuild them with notebook 01's -p qa_renditions=2 -p answer_sentences=0 -p agent_jitter=True to repeat it):
whole answers 1/16 greedy; "short" 8/16. On today's data the first 16 pairs have 4 training renditions each."""
import sys, dataclasses, time, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from experiments.laptop_run import first_pairs, load_run
from s2slib.s2s.finetune import AnswerTask, AnswerTrainConfig, AnswerTrainer, fixed_answer_batches
from s2slib.s2s.train import checkpoint_info, load_s2s
from s2slib.s2s.config import S2SConfig
from s2slib.s2s.evaluate import EvalConfig, ReferenceBank, speak, _sampling, _top1, example_parts
torch.set_num_threads(2)
run = "runs/laptop"; out, steps, nsrc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lr = float(sys.argv[4]) if len(sys.argv) > 4 else 5e-4
import json
extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
codec, cache, tokens = load_run(run)
pre = f"{run}/s2s_pretrain/s2s.pt"
config = dataclasses.replace(S2SConfig.from_dict(checkpoint_info(pre)["s2s_config"]), max_source_frames=750)
sources, ex, train, _ = first_pairs(tokens, config.n_q, nsrc)
import re, math
SHORT = extra.pop("short", False)
def first(a, mn=12):
    for m in re.finditer(r"[.!?]", a):
        if m.end() >= mn: return a[:m.end()].strip()
    return a
if SHORT:
    bank0 = ReferenceBank(codec.sample_rate)
    def render(text, voice, emo):
        w = bank0.get(text, voice, emo)
        with torch.inference_mode():
            c = codec.encode(torch.from_numpy(w)[None, None].float())[0].numpy()
        return c[:, : math.ceil(len(w) / 320)].astype(np.int16)
    train = [dataclasses.replace(e, text=first(e.text), answer=render(first(e.text), e.speaker, e.emotion)) for e in train]
print("train examples", len(train), "answer frames mean", np.mean([e.answer.shape[1] for e in train]), flush=True)
cfg = AnswerTrainConfig(max_steps=steps, batch_size=8, lr=lr, val_every=10**9, ckpt_every=10**9, seed=0, log_every=50, answer=AnswerTask(**extra))
t0 = time.time()
tr = AnswerTrainer(config, cfg, train, train[:8], out, pretrained=pre, device="cpu", codec_fingerprint=cache.fingerprint, sources=sources)
tr.fit()
print("train_min", round((time.time() - t0) / 60, 2), flush=True)
model = load_s2s(f"{out}/s2s.pt").eval()
# teacher-forced accuracy per codebook
b = fixed_answer_batches(train[:16], model.config, 16, cfg.answer)[0]
with torch.inference_mode():
    logits = model(b.src, b.src_lengths, b.inputs, b.speaker, b.emotion)
ok = b.targets >= 0
acc = ((logits.argmax(-1) == b.targets) & ok).sum((0, 2)).float() / ok.sum((0, 2))
print("step0 cb0 TF acc", float((logits[:, 0, 0].argmax(-1) == b.targets[:, 0, 0]).float().mean()))
print("TF top1 acc per codebook", [round(float(a), 2) for a in acc], flush=True)
texts = sorted({e.text for e in ex["test"] if e.kind == "pair"})
if SHORT: texts = sorted({first(t) for t in texts})
ecfg = EvalConfig()
bank = ReferenceBank(codec.sample_rate)
sel = train[:16]
srcs = [example_parts(e, model.config, ecfg.task, True)[0] for e in sel]
for temp, rp, tk in ((0.7, 1.2, 50), (0.7, 1.0, 50), (0.0, 1.0, 0), (0.3, 1.0, 50)):
    s = dataclasses.replace(_sampling(ecfg, model), temperature=temp, repetition_penalty=rp, top_k=tk)
    t1 = time.time()
    wavs = speak(model, codec, srcs, [e.speaker for e in sel], [e.emotion for e in sel], s, 8)
    r = _top1(wavs, sel, texts, bank)
    print(f"T={temp} rp={rp} top_k={tk}: top1 {np.mean([x['correct'] for x in r]):.2f} of {len(r)} (cands {len(texts)}), mean rank {np.mean([x['rank'] for x in r]):.1f}, "
          f"dur {np.round([len(w)/16000 for w in wavs][:6],1)} true {np.round([e.answer.shape[1]/50 for e in sel][:6],1)} ({time.time()-t1:.0f}s)", flush=True)
