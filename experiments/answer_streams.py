"""Which output makes the fine-tuned model say the right answer to a held-out voice: all 8 codebooks, the first 2,
or an "inner monologue" of the answer's characters before the audio?

Fine-tunes runs/laptop's pretrained model on the first NSRC written pairs (their training renditions) with its own
small loop (the library's loss, batches and transcription head), then answers the pairs' training questions and
their held-out-voice test questions, greedy and at temperature 0.7, and matches each answer among the NSRC
candidates (s2slib.s2s.match). Options:
  TEXT_W > 0  adds a text stream to the decoder (an embedding of the answer's characters summed into each step, a head
              predicting the next one; Moshi's "inner monologue", Defossez et al. 2024); LEAD steps of audio delay
              behind it, or LEAD -1: the whole text first, then the audio;
  NQ_OUT      codebooks the decoder speaks (the rest PAD in, no target; the codec decodes those alone).

usage: python experiments/answer_streams.py STEPS NSRC TEXT_W LEAD [THREADS] [NQ_OUT]
   e.g. python experiments/answer_streams.py 300 16 0.0 8 2 2
Measured 2026-11-22 on the laptop run's conversations with agent_voices_per_pair 1 (one agent voice per answer, four
training user voices per question), 16 pairs, 300 steps of 8, three runs at once on 2 cores (11-12 min each):
  300 16 0.0 8 1 8   (8 codebooks)          training questions 15/16 greedy, 5/16 at T 0.7; held-out voices 15/16, 6/16
  300 16 0.0 8 1 2   (2 codebooks)          training questions 16/16, 12/16;                 held-out voices 14/16, 14/16
  300 16 1.0 -1 1 2  (text first, 2 cbks)   text right for 13/16 held-out questions; audio 14/16 greedy, 3/16 at T 0.7
On the data before (each answer in all four voices), 300 16 1.0 8 1 8 began the text right (the first 10-15 characters on
held-out voices) but the text derailed once the free-running audio began: 1-2/16, as without the text.
"""
import sys, dataclasses, time, math, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from experiments.laptop_run import RUN, first_pairs, load_run
from s2slib.s2s.finetune import AnswerTask, AnswerSampler, answer_model_config
from s2slib.s2s.train import load_s2s
from s2slib.s2s.model import S2SModel, codebook_losses, transcription_loss
from s2slib.s2s.delay import IGNORE
from s2slib.s2s.transcript import text_ids, ids_text
from s2slib.s2s.evaluate import ReferenceBank, _top1, example_parts
from s2slib.s2s.generate import SamplingConfig, mask_eos, delay_step, sample
steps, nsrc, text_w, lead = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 2); torch.manual_seed(0)
nq_out = int(sys.argv[6]) if len(sys.argv) > 6 else 8
codec, cache, tokens = load_run()
base = load_s2s(f"{RUN}/s2s_pretrain/s2s.pt")
task = AnswerTask()
config = answer_model_config(dataclasses.replace(base.config, max_source_frames=750), task)
model = S2SModel(config)
model.load_state_dict(base.state_dict(), strict=False)  # the transcription head starts fresh
model.set_codec_latent(cache.latent_table())
_, ex, train, test = first_pairs(tokens, config.n_q, nsrc)
T_EOS, T_PAD, T_BOS = 130, 131, 132
text_embed = nn.Embedding(133, config.d_model); nn.init.normal_(text_embed.weight, std=config.d_model ** -0.5)
text_head = nn.Linear(config.d_model, 131)
params = list(model.parameters()) + list(text_embed.parameters()) + list(text_head.parameters())
opt = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.95), weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 30) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
sampler = AnswerSampler(train, config, 8, task, seed=0)
n_q = config.n_q

def with_text(b, items):
    B, _, L = b.inputs.shape
    ids = [torch.from_numpy(text_ids(e.text))[:120] for e in items]
    leads = [len(t) + 1 if lead < 0 else lead for t in ids]
    L2 = L + max(leads)
    inputs = torch.full((B, n_q, L2), config.pad_id, dtype=torch.long)
    targets = torch.full((B, n_q, L2), IGNORE, dtype=torch.long)
    tstream = torch.full((B, L2), T_PAD, dtype=torch.long)
    for i, (t, ld) in enumerate(zip(ids, leads)):
        inputs[i, :, 0] = config.bos_id
        inputs[i, :, ld + 1: ld + L] = b.inputs[i, :, 1:]
        targets[i, :, ld: ld + L] = b.targets[i]
        tstream[i, : len(t)] = t; tstream[i, len(t)] = T_EOS
    tin = torch.cat([torch.full((B, 1), T_BOS), tstream[:, :-1]], -1)
    ttg = tstream.masked_fill(tstream == T_PAD, IGNORE)
    inputs[:, nq_out:, 1:] = config.pad_id
    targets[:, nq_out:] = IGNORE
    return inputs, targets, tin, ttg

def decode(tgt_in, tin, memory, keep, spk, emo):
    x = model.tgt_embed(tgt_in) + model.condition(spk, emo)
    if text_w > 0: x = x + text_embed(tin)
    mask = keep[:, None, None, :]
    for blk in model.decoder:
        x = blk(x, blk.cross_attn.project_kv(memory), mask)
    return model._logits(x), text_head(model.decoder_norm(x))

t0 = time.time()
for step in range(steps):
    model.train()
    rng = np.random.default_rng([0, step, 0])
    picks = rng.integers(0, len(train), 8); items = [train[i] for i in picks]
    b = sampler.collate(items, [sampler.example(it, rng) for it in items])
    inputs, targets, tin, ttg = with_text(b, items)
    memory, keep = model.encode(b.src, b.src_lengths)
    logits, tlog = decode(inputs, tin, memory, keep, b.speaker, b.emotion)
    nll, _, cnt = codebook_losses(logits, targets)
    loss = (nll[:nq_out] / cnt[:nq_out].clamp(min=1)).mean()
    lp = model.transcribe(memory, keep, b.user_lengths)
    ctc = transcription_loss(lp, b.user_lengths, b.text, b.text_lengths)
    tl = F.cross_entropy(tlog.reshape(-1, 131), ttg.reshape(-1), ignore_index=IGNORE)
    total = loss + 0.5 * ctc + (text_w * tl if text_w > 0 else 0)
    opt.zero_grad(); total.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step()
    if step % 50 == 0 or step == steps - 1:
        print(f"step {step} loss {loss.item():.3f} cb0 {(nll[0]/cnt[0]).item():.3f} text {tl.item():.3f} ctc {ctc.item():.3f} ({time.time()-t0:.0f}s)", flush=True)

@torch.inference_mode()
def answer(e, cfg, gen):
    model.eval()
    src = torch.from_numpy(example_parts(e, config, task, True)[0].astype(np.int64))[None]
    memory, keep = model.encode(src)
    spk = torch.tensor([config.speaker_index(e.speaker)]); emo = torch.tensor([config.emotion_index(e.emotion)])
    cond = model.condition(spk, emo)
    kvs = [blk.cross_attn.project_kv(memory) for blk in model.decoder]
    from s2slib.s2s.layers import KVCache
    caches = [KVCache(1, config.n_heads, 600, config.head_dim, memory.device, memory.dtype) for _ in model.decoder]
    end = torch.full((1,), -1); toks = torch.full((1, n_q, 0), config.pad_id)
    inp = torch.full((1, n_q, 1), config.bos_id); tinp = torch.full((1, 1), T_BOS); said = []; tdone = False
    ld = lead if lead >= 0 else 10**6
    for t in range(cfg.max_frames + n_q + (lead if lead >= 0 else 130)):
        x = model.tgt_embed(inp) + cond
        if text_w > 0: x = x + text_embed(tinp)
        for blk, kv, ch in zip(model.decoder, kvs, caches):
            x = blk(x, kv, keep[:, None, None, :], ch)
        logits = model._logits(x)[:, :, -1]
        if text_w > 0 and not tdone:
            tl = text_head(model.decoder_norm(x))[:, -1].float(); tl[:, 0] = -1e9
            tt = int(tl.argmax(-1)) if cfg.temperature == 0 else int(torch.multinomial((tl / cfg.temperature).softmax(-1), 1, generator=gen))
            if tt == T_EOS or len(said) >= 120:
                tdone = True
                if lead < 0: ld = t + 1
            else: said.append(tt)
            tinp = torch.tensor([[tt]])
        else:
            tinp = torch.tensor([[T_PAD]])
        if t < ld:
            tok = torch.full((1, n_q), config.pad_id); toks = torch.cat([toks, tok[..., None]], -1); inp = tok[..., None]; continue
        steps_ = torch.full((1,), t - ld)
        mask_eos(logits, steps_, cfg.min_frames, config.eos_id)
        tok = sample(logits, cfg, toks[..., max(0, t - cfg.repetition_window):], gen)
        tok, end = delay_step(tok, steps_, end, cfg.max_frames, config)
        tok[:, nq_out:] = config.pad_id
        toks = torch.cat([toks, tok[..., None]], -1); inp = tok[..., None]
        if end[0] >= 0 and t - ld >= end[0] + n_q - 1: break
    a = toks[..., ld:]
    Fr = a.shape[-1] - n_q + 1
    codes = torch.stack([a[0, j, j:j + Fr] for j in range(n_q)])
    L = int(end[0]) if end[0] >= 0 else Fr
    codes = codes[:, :L].clamp(max=config.codebook_size - 1)
    return (codec.decode(codes[None, :nq_out]).reshape(-1).numpy() if L else np.zeros(0)), ids_text(said)

# teacher-forced text accuracy on training examples, eval mode
model.eval()
with torch.no_grad():
    items = train[:8]; rng = np.random.default_rng(5)
    b = sampler.collate(items, [sampler.example(it, rng) for it in items])
    inputs, targets, tin, ttg = with_text(b, items)
    memory, keep = model.encode(b.src, b.src_lengths)
    logits, tlog = decode(inputs, tin, memory, keep, b.speaker, b.emotion)
    ok = ttg != IGNORE
    print("TF text acc", float(((tlog.argmax(-1) == ttg) & ok).sum() / ok.sum()), "first-char acc", float((tlog[:, 0].argmax(-1) == ttg[:, 0]).float().mean()))
bank = ReferenceBank(codec.sample_rate)
texts = sorted({e.text for e in test})
print("train", len(train), "test", len(test), "cands", len(texts), "train_min", round((time.time()-t0)/60, 1))
seen = {}
for e in train:
    seen.setdefault(e.source_id, e)
for name, sel in (("train", list(seen.values())), ("test", test)):
    for temp in (0.0, 0.7):
        gen = torch.Generator().manual_seed(0)
        res = [answer(e, SamplingConfig(temperature=temp, max_frames=400), gen) for e in sel]
        r = _top1([w for w, _ in res], sel, texts, bank)
        for e, (_, s_) in list(zip(sel, res))[:3]: print("  TRUE", ids_text(text_ids(e.text))[:60], "| SAID", s_[:60])
        tm = sum(ids_text(text_ids(e.text)) == s for e, (_, s) in zip(sel, res))
        print(f"{name} T={temp}: top1 {sum(x['correct'] for x in r)}/{len(r)} rank {np.mean([x['rank'] for x in r]):.1f} text exact {tm}/{len(r)} dur {np.mean([len(w) for w,_ in res])/16000:.1f}s", flush=True)
