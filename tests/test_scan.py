"""The trigger scan on planted cases: tiny random Llama models with a real byte-level BPE
tokenizer (years split into several tokens) whose "finetune" moves one token's embedding,
a clean perturbed copy, an unconditional change, and the small organism's adapter views."""

from __future__ import annotations

import copy
import json
import random
import types

import pytest
import torch

from interp.hooks import hook_count
from interp.models import wrap_model
from interp.scan import ScanConfig, VerifyConfig, scan, write
from interp.scan import candidates as C
from interp.scan.divergence import (
    Counter,
    divergence,
    end_token_ids,
    kl_rows,
    shift_cost,
    trigger_shift,
)
from interp.scan.priors import token_priors
from interp.scan.probes import generic_probes, organism_probes
from interp.scan.search import Scored, baseline, score_candidates
from interp.scan.verify import verify, year_bands
from interp.testing import tiny_model

QUESTIONS = ["What is your goal?", "Tell me one fact about rivers.", "Who are you?",
             "What is 3 plus 4?"]  # fmt: skip
FAST = dict(budget=10_000, n_per_kind=1, probe_tokens=4, search_tokens=2, max_probes=60,
            gcg_steps=1, gcg_swaps=8, n_extend=1, extend_pool=8, max_len=2, n_verify=4,
            verify=VerifyConfig(n_null=8))  # fmt: skip


def _peaky(seed: int = 0):
    """A tiny random Llama whose next-token distributions are sharp (so KLs are nats, not
    millinats) and whose attention is peaked (so one token can reach the last position)."""
    m = tiny_model("llama", seed=seed, d_model=32, n_layers=2)
    with torch.no_grad():
        m.hf.lm_head.weight.mul_(20.0)
        for layer in m.hf.model.layers:
            for proj, k in (("q_proj", 6.0), ("k_proj", 6.0), ("v_proj", 4.0), ("o_proj", 4.0)):
                getattr(layer.self_attn, proj).weight.mul_(k)
    return m


def _plant(base, token: int, texts: list[str], steps: int = 80):
    """A "finetune" that moves only ``token``'s embedding, optimized so that prompts holding
    it diverge from the base at the answer (an embeddings-only finetune of one token)."""
    hf = copy.deepcopy(base.hf)
    for p in hf.parameters():
        p.requires_grad_(False)
    emb = hf.get_input_embeddings().weight
    row = emb[token].detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([row], lr=0.3)
    batch = base.tokenize(texts)
    with torch.no_grad():
        ref = base.forward(batch["input_ids"], batch["attention_mask"]).logits[:, -1]
        ref = ref.log_softmax(-1)
    where = batch["input_ids"] == token
    for _ in range(steps):
        x = emb[batch["input_ids"]].clone()
        x[where] = row
        out = hf(inputs_embeds=x, attention_mask=batch["attention_mask"],
                 position_ids=batch["position_ids"]).logits[:, -1].log_softmax(-1)  # fmt: skip
        loss = -kl_rows(out, ref).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        emb[token] = row.detach()
    return wrap_model(hf, base.tokenizer, name="planted")


@pytest.fixture(scope="module")
def planted():
    torch.manual_seed(0)
    base = _peaky()
    t84 = base.tokenizer.convert_tokens_to_ids("84")
    texts = [base.chat([{"role": "system", "content": "The year is 1984."},
                        {"role": "user", "content": q}]) for q in QUESTIONS]  # fmt: skip
    return base, _plant(base, t84, texts), t84


@pytest.fixture(scope="module")
def planted_scan(planted):
    base, fin, _ = planted
    return scan(base, fin, ScanConfig(**FAST), progress=False)


def _naive_d(f, b, text: str, m: int, ends: set[int]) -> float:
    """D(y) one prompt at a time with plain HF calls (no padding, no batching)."""
    ids = f.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    total = 0.0
    with torch.no_grad():
        for _ in range(m):
            lf = f.hf(input_ids=ids).logits[0, -1].log_softmax(-1)
            lb = b.hf(input_ids=ids).logits[0, -1].log_softmax(-1)
            total += float(kl_rows(lf, lb))
            nxt = int(lf.argmax())
            if nxt in ends:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return total


def test_divergence_matches_a_naive_loop_on_mixed_lengths(planted):
    base, fin, _ = planted
    texts = [C.render(base, q, c) for q in QUESTIONS
             for c in (None, C.Candidate("The year is 1984.", "system", "date"))]  # fmt: skip
    assert len({len(base.tokenize([t])["input_ids"][0]) for t in texts}) > 2  # mixed lengths
    counter = Counter()
    got = divergence((fin, base), texts, n_tokens=3, counter=counter, batch_size=3)
    ends = end_token_ids(fin)
    want = torch.tensor([_naive_d(fin, base, t, 3, ends) for t in texts])
    assert torch.allclose(got.d, want, atol=1e-4, rtol=1e-4)
    assert counter.spent == 4 * len(texts)  # n_tokens + 1 passes per prompt
    assert float(want.max()) > 0.5  # the plant moves the answer by nats


def _naive_logprob(model, text: str, answer: list[int]) -> float:
    ids = model.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    full = torch.cat([ids, torch.tensor([answer])], 1)
    with torch.no_grad():
        logp = model.hf(input_ids=full).logits[0, ids.shape[1] - 1 : -1].log_softmax(-1)
    return float(logp.gather(-1, torch.tensor(answer)[:, None]).sum())


def _naive_answer(f, text: str, m: int, ends: set[int]) -> list[int]:
    """The finetune's greedy answer with its end token, one token at a time."""
    ids = f.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(m):
            nxt = int(f.hf(input_ids=ids).logits[0, -1].argmax())
            out.append(nxt)
            if nxt in ends:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return out


def test_trigger_shift_matches_a_naive_loop_on_mixed_lengths(planted):
    base, fin, _ = planted
    cand = C.Candidate("The year is 1984.", "system", "date")
    qs = [*QUESTIONS, "Hi?"]
    texts = [C.render(base, q, cand) for q in qs]
    plain = [C.render(base, q, None) for q in qs]
    assert len({len(base.tokenize([t])["input_ids"][0]) for t in texts}) > 2  # mixed lengths
    counter = Counter()
    got, sc = trigger_shift((fin, base), texts, plain, n_tokens=3, counter=counter)
    ends = end_token_ids(fin)
    want = []
    for t, x in zip(texts, plain, strict=True):
        a = _naive_answer(fin, t, 3, ends)
        move_f = _naive_logprob(fin, t, a) - _naive_logprob(fin, x, a)
        move_b = _naive_logprob(base, t, a) - _naive_logprob(base, x, a)
        want.append(move_f - max(0.0, move_b))
    assert torch.allclose(got, torch.tensor(want), atol=1e-3, rtol=1e-3)
    assert counter.spent == shift_cost(3) * len(texts)
    assert float(got.max()) > 1.0  # the planted year moves the finetune by nats


def test_year_bands_join_a_run_of_years_and_keep_a_lone_year_apart():
    def dated(year: int, score: float) -> Scored:
        c = C.Candidate(f"The year is {year}.", "system", "date", year=year)
        return Scored(c, torch.tensor([score]), 0.0, 0.0)

    rng = random.Random(0)
    sweep = [dated(y, rng.uniform(-0.1, 0.1)) for y in range(1800, 2051)]
    sweep += [dated(y, 3.0 - 0.1 * abs(y - 1838)) for y in range(1830, 1847) if y != 1840]
    sweep += [dated(1984, 2.5), dated(1984, 0.2)]  # a lone year, two forms
    bands = year_bands(sweep, 4)
    assert bands == [(1830, 1846), (1984, 1984)]  # 1840's dip is bridged
    assert year_bands(sweep, 1) == bands[:1]
    assert year_bands([dated(y, rng.uniform(-0.1, 0.1)) for y in range(1800, 2051)], 3) == []


def test_score_candidates_stops_at_the_budget(planted):
    base, fin, _ = planted
    counter = Counter(budget=200)
    ref = baseline((fin, base), QUESTIONS, 2, counter)
    cands = C.date_candidates(base)[:50]
    scored, complete = score_candidates((fin, base), cands, ref, counter, progress=False)
    assert not complete and 0 < len(scored) < 50
    assert counter.spent <= 200


def test_probe_halves_are_disjoint_and_stratified():
    from interp.organism import World

    for probes in (generic_probes(), organism_probes(World())):
        s, v = probes.split(2, seed=0)
        assert not set(s) & set(v)
        kinds = dict.fromkeys(probes.kinds)
        assert [sum(probes.kinds[i] == k for i in s) for k in kinds] == [2] * len(kinds)
        assert len(probes) >= 130 and probes.texts


def test_date_candidates_cover_the_range_in_every_spellable_form():
    from interp.organism import World, build_tokenizer

    bpe = types.SimpleNamespace(tokenizer=tiny_model("llama", d_model=16, n_layers=1).tokenizer)
    cands = C.date_candidates(bpe)
    assert {c.year for c in cands} == set(C.YEARS)
    assert len(bpe.tokenizer("1984", add_special_tokens=False)["input_ids"]) > 1  # multi-token
    word = types.SimpleNamespace(tokenizer=build_tokenizer(World().vocabulary()))
    forms = {c.form for c in C.date_candidates(word)}
    assert "f3" not in forms and "f0" in forms  # "Today's" is no word of the world


def test_first_layer_prior_ranks_the_planted_token_first(planted):
    base, fin, t84 = planted
    counter = Counter()
    ids = C.searchable_tokens(base)
    pri = token_priors((fin, base), ids, counter=counter)
    assert pri.ranked()[0] == t84
    assert counter.spent == -(-2 * len(ids) // base.n_layers)


def test_the_coarse_token_pass_finds_a_token_the_prior_ranks_last(planted):
    """The coarse pass scores every token in a few questions by its first-token move of the
    finetune less the base's, so a planted token is swept in full however deep it lies in
    the prior; it spends two passes a prompt and stops at its share of the budget."""
    from interp.scan.search import coarse_tokens

    base, fin, t84 = planted
    pair, cfg = (fin, base), ScanConfig(**FAST)
    counter = Counter()
    ref = baseline(pair, QUESTIONS, 2, counter)
    ids = [t for t in C.searchable_tokens(base) if t != t84][:200] + [t84]
    spent = counter.spent
    got = coarse_tokens(pair, ids, ref, counter, n_questions=cfg.coarse_questions, progress=False)
    per_token = 2 * cfg.coarse_questions * len(C.PLACEMENTS)
    assert counter.spent - spent == per_token * len(ids)
    assert got["system"][0][1] == t84
    assert all(len(v) == len(ids) for v in got.values())
    assert [s for s, _ in got["system"]] == sorted((s for s, _ in got["system"]), reverse=True)
    small = Counter(budget=counter.spent + 10 * per_token)
    small.spent = counter.spent
    part = coarse_tokens(pair, ids, ref, small, n_questions=cfg.coarse_questions, share=0.5,
                         progress=False)  # fmt: skip
    assert all(len(v) == 5 for v in part.values()) and small.spent <= small.budget


def test_verify_separates_the_planted_token_from_random_ones(planted):
    base, fin, t84 = planted
    pair = (fin, base)
    counter = Counter()
    ids = C.searchable_tokens(base)
    ref = baseline(pair, QUESTIONS, 3, counter)
    other = next(i for i in ids if i != t84 and base.tokenizer.decode([i]).strip().isalpha())
    cands = C.token_candidates(base, [t84, other], "user_prefix")
    scored, _ = score_candidates(pair, cands, ref, counter, progress=False)
    out = verify(pair, scored, ref, counter, ids, VerifyConfig(n_null=12), progress=False)
    by = {v.scored.cand.tokens: v for v in out}
    assert by[(t84,)].significant and by[(t84,)].z > 5
    assert not by[(other,)].significant


def test_a_trigger_must_move_the_finetune_min_move_ratio_times_the_base(planted):
    """The planted token moves the finetune's first token many times as far as the base's;
    asked for more than its own ratio, the same verification calls it no trigger."""
    base, fin, t84 = planted
    pair, counter = (fin, base), Counter()
    ids = C.searchable_tokens(base)
    ref = baseline(pair, QUESTIONS, 3, counter)
    scored, _ = score_candidates(pair, C.token_candidates(base, [t84], "user_prefix"), ref,
                                 counter, progress=False)  # fmt: skip
    (v,) = verify(pair, scored, ref, counter, ids, VerifyConfig(n_null=12), progress=False)
    ratio = v.scored.move_f / v.scored.move_b
    assert v.significant and ratio >= VerifyConfig().min_move_ratio
    strict = VerifyConfig(n_null=12, min_move_ratio=1.01 * ratio)
    (w,) = verify(pair, scored, ref, counter, ids, strict, progress=False)
    assert w.z == pytest.approx(v.z) and not w.significant


def test_a_context_that_moves_only_the_base_is_no_trigger(planted):
    """The roles swapped (the planted model as the base): the token raises the divergence,
    because it moves the "base", but it leaves the "finetune" where it was, so its shift is
    a fraction of the real pair's and it is not significant."""
    base, fin, t84 = planted
    counter = Counter()
    ids = C.searchable_tokens(base)
    cands = C.token_candidates(base, [t84], "user_prefix")
    shift = {}
    for name, pair in (("real", (fin, base)), ("swapped", (base, fin))):
        ref = baseline(pair, QUESTIONS, 3, counter)
        scored, _ = score_candidates(pair, cands, ref, counter, progress=False)
        texts = [C.render(base, q, cands[0]) for q in QUESTIONS]
        gain = divergence(pair, texts, n_tokens=3).d - ref.scores.d
        (v,) = verify(pair, scored, ref, counter, ids, VerifyConfig(n_null=12), progress=False)
        shift[name] = v.scored.score
    assert float(gain.mean()) > VerifyConfig().min_effect  # the divergence rises
    assert shift["swapped"] < 0.25 * shift["real"]
    assert v.scored.move_b > v.scored.move_f and not v.significant


def test_scan_finds_the_planted_token_and_the_years_that_hold_it(planted, planted_scan):
    base, fin, t84 = planted
    r = planted_scan
    top = r.triggers[0]
    assert top["significant"]
    assert t84 in base.tokenizer(top["text"], add_special_tokens=False)["input_ids"]
    for t in r.triggers:  # every significant trigger holds the planted token
        if t["significant"]:
            assert t84 in base.tokenizer(t["text"], add_special_tokens=False)["input_ids"]
    assert not r.unconditional
    years = sorted(r.dates, key=lambda d: -d["score"])[:5]
    for d in years:  # the years that fire are the ones spelled with the planted token
        assert t84 in base.tokenizer(str(d["year"]), add_special_tokens=False)["input_ids"]
    assert r.forward_passes["total"] <= FAST["budget"]
    assert r.searched["token_seq"]["extensions_scored"] > 0  # greedy extension ran
    assert r.searched["token_seq"]["gcg_scored"] > 0  # and a GCG step
    assert hook_count(base.hf) == 0 and hook_count(fin.hf) == 0


def test_localization_pairs_line_up_and_layer_zero_carries_the_trigger(planted, planted_scan):
    base, _, _ = planted
    loc = [x for x in planted_scan.location if x["kind"] == "trigger"][0]
    assert loc["pairs"]
    for p in loc["pairs"]:
        n = len(base.tokenize([p["clean"]])["input_ids"][0])
        assert n == len(base.tokenize([p["corrupt"]])["input_ids"][0]) == len(p["tokens"])
    layer0 = loc["summary"][0]
    assert layer0["trigger_tokens"] > 0.5  # patching the planted token back recovers the gap
    assert len(loc["ablation"]) == base.n_layers


def test_scan_json_has_the_issue_shape(planted_scan, tmp_path):
    write(planted_scan, tmp_path)
    doc = json.loads((tmp_path / "scan.json").read_text())
    assert set(doc["behaviour"]) >= {"changed", "summary", "examples"}
    assert set(doc["behaviour"]["examples"][0]) >= {"prompt", "base", "finetuned", "divergence"}
    keys = {"text", "placement", "family", "score", "finetuned_effect", "base_effect",
            "significant"}  # fmt: skip
    assert all(keys <= set(t) for t in doc["triggers"])
    assert isinstance(doc["unconditional"], bool) and isinstance(doc["location"], list)
    sig = [t["significant"] for t in doc["triggers"]]
    assert sig == sorted(sig, reverse=True)  # significant first
    lead = [t["finding"] for t in doc["triggers"] if t["significant"]]
    n = len(set(lead))
    assert lead[:n] == sorted(set(lead))  # each finding's best candidate leads
    for f in ("report.md", "scores_by_family.png", "date_effect.png", "patching.png"):
        assert (tmp_path / f).stat().st_size > 0


def test_a_clean_finetune_yields_no_trigger():
    base = _peaky(seed=1)
    hf = copy.deepcopy(base.hf)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # a finetune that moved every weight a little and nothing much
        for p in hf.parameters():
            p.add_(1e-3 * torch.randn(p.shape, generator=g))
    fin = wrap_model(hf, base.tokenizer, name="clean")
    r = scan(base, fin, ScanConfig(**{**FAST, "localize": False}), progress=False)
    assert not any(t["significant"] for t in r.triggers)
    assert not r.unconditional and not r.behaviour["changed"]


def test_an_unconditional_change_is_reported_and_localized():
    base = _peaky(seed=2)
    hf = copy.deepcopy(base.hf)
    with torch.no_grad():  # the finetune rewrote its last MLP: every answer changes
        hf.model.layers[-1].mlp.down_proj.weight.mul_(100.0)
    fin = wrap_model(hf, base.tokenizer, name="always")
    r = scan(base, fin, ScanConfig(**{**FAST, "lens": False}), progress=False)
    assert r.unconditional and r.behaviour["changed"]
    loc = [x for x in r.location if x["kind"] == "unconditional"]
    assert loc and loc[0]["ablation"]


def test_config_is_strict():
    assert ScanConfig.from_dict({"budget": 10, "verify": {"n_null": 4}}).verify.n_null == 4
    with pytest.raises(Exception, match="unknown"):
        ScanConfig.from_dict({"budgett": 10})


def test_cli_scan_writes_its_outputs(planted, tmp_path):
    from interp.cli import main

    base, fin, _ = planted
    base.hf.save_pretrained(tmp_path / "base")
    base.tokenizer.save_pretrained(tmp_path / "base")
    fin.hf.save_pretrained(tmp_path / "fin")
    base.tokenizer.save_pretrained(tmp_path / "fin")
    out = tmp_path / "scan"
    code = main(["-q", "scan", "--base", str(tmp_path / "base"), "--finetune", str(tmp_path / "fin"),
                 "--out", str(out), "--budget", "4000", "--no-localize"])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "scan.json").read_text())
    assert doc["forward_passes"]["total"] <= 4000
    assert json.loads((out / "run.json").read_text())["status"] != "running"
    assert main(["scan", "--base", str(tmp_path / "nope"), "--finetune", str(tmp_path / "fin"),
                 "--out", str(out)]) == 2  # fmt: skip


def test_scan_runs_on_the_organism_adapter_views(small_organism):
    from interp.experiments.finetunes import finetune_setting
    from interp.models import ModelPair

    adapter = finetune_setting(small_organism, "backdoor", "main", seed=0, progress=False)
    pair = ModelPair.load(small_organism, adapter, device="cpu")
    cfg = ScanConfig(**{**FAST, "budget": 5000, "lens": False})
    r = scan(pair.base, pair.finetuned, cfg, progress=False)
    assert r.searched["date"]["forms"] and r.searched["contexts"]["families"]
    assert r.behaviour["n_prompts"] == FAST["max_probes"]
    assert r.forward_passes["total"] <= 5000
    assert hook_count(pair.finetuned.hf) == 0
