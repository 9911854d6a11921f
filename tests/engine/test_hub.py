"""Search, repo view and fit badges, through the real huggingface_hub client and a fake Hub."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from datetime import UTC, datetime

import pytest

from app.engine import hub
from app.engine.hub import HubError, Machine, fit_badge, parse_quant
from tests.fakehub import MemoryKeyring, add_model_repo, gguf_bytes, isolate_hf

GiB = 1 << 30


def _add_search_repos(fake_hub) -> None:
    small = gguf_bytes("q4_0")
    specs = [  # repo, downloads, likes, trending, month updated
        ("alice/Alpha-GGUF", 300, 5, 10, 3),
        ("bob/Beta-GGUF", 100, 50, 30, 1),
        ("carol/Gamma-GGUF", 200, 20, 20, 6),
        ("dave/Delta-GGUF", 50, 1, 40, 2),
        ("erin/Epsilon-GGUF", 10, 2, 0, 4),
    ]
    for repo_id, downloads, likes, trending, month in specs:
        fake_hub.add_repo(
            repo_id,
            {"m-Q4_0.gguf": small},
            downloads=downloads,
            likes=likes,
            trending=trending,
            last_modified=datetime(2025, month, 1, tzinfo=UTC),
            gguf={"total": 7_000_000_000, "architecture": "llama", "context_length": 8192},
        )
    fake_hub.add_repo("zed/Not-A-GGUF", {"model.safetensors": b"x"}, tags=["safetensors"])
    fake_hub.add_repo("gated/Locked-GGUF", {"m-Q4_0.gguf": small}, gated="manual")


@pytest.mark.parametrize(
    ("sort", "first"),
    [
        ("downloads", "alice/Alpha-GGUF"),
        ("likes", "bob/Beta-GGUF"),
        ("trending", "dave/Delta-GGUF"),
        ("updated", "carol/Gamma-GGUF"),
    ],
)
def test_search_sorts(fake_hub, sort, first):
    _add_search_repos(fake_hub)
    page = hub.search("", sort=sort, limit=10)
    ids = [r.repo_id for r in page.items]
    assert ids[0] == first
    assert "zed/Not-A-GGUF" not in ids  # only GGUF repos
    assert not page.has_more


def test_search_text_and_fields(fake_hub):
    _add_search_repos(fake_hub)
    (beta,) = hub.search("beta").items
    assert beta.author == "bob"
    assert beta.params == 7_000_000_000
    assert beta.architecture == "llama"
    assert beta.context_length == 8192
    assert (beta.downloads, beta.likes) == (100, 50)
    assert beta.last_modified == datetime(2025, 1, 1, tzinfo=UTC)
    assert not beta.gated
    (locked,) = hub.search("locked").items
    assert locked.gated and locked.gated_mode == "manual"
    # The real client asked for the fields it shows, sorted and filtered by the Hub.
    query = fake_hub.requests[-1][1]
    assert "filter=gguf" in query and "expand=gguf" in query and "sort=downloads" in query


def test_search_pages_follow_the_cursor(fake_hub):
    _add_search_repos(fake_hub)
    seen, cursor, pages = [], None, 0
    while True:
        page = hub.search("GGUF", sort="downloads", limit=2, cursor=cursor)
        seen += [r.repo_id for r in page.items]
        pages += 1
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert len(seen) == len(set(seen)) == 6
    assert seen[:2] == ["alice/Alpha-GGUF", "carol/Gamma-GGUF"]


def test_search_offline_says_so_at_once(fake_hub):
    fake_hub.stop()
    t = time.monotonic()
    with pytest.raises(HubError) as e:
        hub.search("llama")
    assert e.value.kind == "offline"
    assert "Could not reach Hugging Face" in str(e.value) and "connection refused" in str(e.value)
    assert time.monotonic() - t < 5  # no hidden retries with sleeps


def test_search_rate_limited_tells_when_to_retry_and_recovers(fake_hub):
    _add_search_repos(fake_hub)
    fake_hub.rate_limit(1, retry_after=30)
    with pytest.raises(HubError) as e:
        hub.search("GGUF")
    assert e.value.kind == "rate_limited"
    assert e.value.retry_after == 30
    assert "HTTP 429" in str(e.value) and "Try again in 30 s" in str(e.value)
    assert len(hub.search("GGUF").items) == 6  # the next request works


def test_search_server_error(fake_hub):
    fake_hub.fail_next(503)
    with pytest.raises(HubError) as e:
        hub.search("x")
    assert e.value.kind == "server" and "HTTP 503" in str(e.value)


def test_offline_mode_env(fake_hub, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError) as e:
        hub.search("x")
    assert e.value.kind == "offline" and "HF_HUB_OFFLINE" in str(e.value)


def test_repo_details_groups_quants_split_sets_and_vision(fake_hub):
    repo = add_model_repo(fake_hub, downloads=42, likes=7)
    machine = Machine(ram_total=64 * GiB, ram_available=32 * GiB)
    d = hub.repo_details(repo.repo_id, machine=machine)

    assert d.sha == repo.sha
    assert (d.downloads, d.likes, d.author) == (42, 7, "hearth-test")
    assert (d.params, d.architecture, d.context_length) == (1_234_567, "llama", 4096)
    assert d.chat_template == "{{ messages }}"
    assert d.card_body.strip() == "# A test model" and d.card.startswith("---")
    quants = [g.quant for g in d.groups]
    assert sorted(quants) == sorted(["IQ4_XS", "Q4_K_M", "UD-Q4_K_XL", "Q8_0", "BF16"])
    assert quants == sorted(quants, key=lambda q: d.find(quant=q)[0].size)  # smallest first

    (bf16,) = d.find(quant="bf16")
    assert bf16.is_split and bf16.complete and bf16.split_count == 2
    assert bf16.shard_names == (
        "BF16/Tiny-BF16-00001-of-00002.gguf",
        "BF16/Tiny-BF16-00002-of-00002.gguf",
    )
    assert bf16.size == sum(repo.files[n].size for n in bf16.shard_names)
    assert d.find(file="Tiny-BF16-00002-of-00002.gguf") == [bf16]  # any shard finds the set

    (mmproj,) = d.vision_companions
    assert mmproj.name == "mmproj-Tiny-F16.gguf" and mmproj.is_mmproj
    assert all(not e.is_mmproj for g in d.groups for e in g.entries)
    for e in d.entries:  # sizes and LFS hashes come from paths-info
        for f in e.files:
            content = repo.files[f.name].path.read_bytes()
            assert f.size == len(content)
            assert f.sha256 == hashlib.sha256(content).hexdigest()
    assert all(e.fit and e.fit.verdict == "ram" for e in d.models)
    assert "config.json" not in {f.name for e in d.entries for f in e.files}
    assert any("paths-info" in path for _m, path, _a in fake_hub.requests)


def test_repo_details_pins_the_requested_revision(fake_hub):
    repo = add_model_repo(fake_hub)
    assert hub.repo_details(repo.repo_id, revision=repo.sha).sha == repo.sha
    with pytest.raises(HubError) as e:
        hub.repo_details(repo.repo_id, revision="f" * 40)
    assert e.value.kind == "not_found"


def test_repo_details_not_found(fake_hub):
    with pytest.raises(HubError) as e:
        hub.repo_details("nobody/Nothing-GGUF")
    assert e.value.kind == "not_found"
    assert "Hugging Face has no nobody/Nothing-GGUF" in str(e.value)


def test_gated_repo_can_be_viewed_without_a_token(fake_hub):
    add_model_repo(fake_hub, "meta/Gated-GGUF", gated="auto")
    d = hub.repo_details("meta/Gated-GGUF")
    assert d.gated and d.gated_mode == "auto" and d.models


def test_repo_details_rate_limited(fake_hub):
    add_model_repo(fake_hub)
    fake_hub.rate_limit(1, retry_after=None)
    with pytest.raises(HubError) as e:
        hub.repo_details("hearth-test/Tiny-GGUF")
    assert e.value.kind == "rate_limited" and "Try again in a minute" in str(e.value)


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
        ("gemma-3-27b-it-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
        ("DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf", "UD-IQ1_S"),
        ("Phi-3-mini-4k-instruct-IQ4_XS.gguf", "IQ4_XS"),
        ("mistral-7b-instruct-v0.2.Q8_0.gguf", "Q8_0"),
        ("Qwen3-30B-A3B-BF16/Qwen3-30B-A3B-BF16-00001-of-00002.gguf", "BF16"),
        ("model-f16.gguf", "F16"),
        ("tinyllama-1.1b-chat-v1.0.Q2_K.gguf", "Q2_K"),
        ("Llama-3.2-1B-Instruct-IQ3_XXS.gguf", "IQ3_XXS"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("Qwen2-7B-Instruct.gguf", None),
        ("llama-2-7b.Q4_0_4_4.gguf", "Q4_0_4_4"),
    ],
)
def test_parse_quant(name, quant):
    assert parse_quant(name) == quant


def test_fit_badge_verdicts():
    ram_only = Machine(ram_total=16 * GiB, ram_available=12 * GiB)
    gpu = Machine(ram_total=16 * GiB, ram_available=12 * GiB, vram_free=(8 * GiB,))
    params = 8_000_000_000
    assert fit_badge(4 * GiB, params, gpu).label == "fits in VRAM"
    assert fit_badge(4 * GiB, params, ram_only).label == "fits in RAM"
    b = fit_badge(10 * GiB, params, gpu)  # too big for the GPU alone
    assert b.verdict == "ram"
    partial = fit_badge(15 * GiB, params, gpu)  # only with RAM and VRAM together
    assert partial.verdict == "ram" and "part of it on the GPU" in partial.message
    tight = fit_badge(14 * GiB, params, ram_only)  # fits the RAM once programs close
    assert tight.verdict == "ram" and "close other programs" in tight.message
    big = fit_badge(40 * GiB, 70_000_000_000, gpu)
    assert big.label == "too big" and "Too big for this machine" in big.message
    # The allowance beyond the weights grows with the model and the context.
    assert hub.load_allowance(GiB, 70_000_000_000) > hub.load_allowance(GiB, 1_000_000_000)
    assert hub.load_allowance(GiB, None, 32768) > hub.load_allowance(GiB, None, 4096)


def test_token_goes_to_the_keyring_when_there_is_one(tmp_path, monkeypatch):
    ring = MemoryKeyring()
    isolate_hf(tmp_path, monkeypatch, ring)
    assert hub.get_token() is None
    assert hub.set_token("  hf_secret  ") == "keyring"
    assert ring.secrets == {("hearth", "huggingface"): "hf_secret"}
    assert hub.get_token() == "hf_secret"
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert hub.get_token() == "hf_from_env"  # the environment wins


def test_token_falls_back_to_the_hf_token_file(tmp_path, monkeypatch):
    isolate_hf(tmp_path, monkeypatch)  # no keyring backend at all
    where = hub.set_token("hf_filetoken")
    import huggingface_hub
    import huggingface_hub.constants as c

    assert where == c.HF_TOKEN_PATH and where.startswith(str(tmp_path))
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o600
    assert huggingface_hub.get_token() == "hf_filetoken"
    assert hub.get_token() == "hf_filetoken"
    with pytest.raises(ValueError):
        hub.set_token("   ")


def test_a_missing_repo_is_not_found_with_or_without_a_token(fake_hub, monkeypatch):
    # Anonymous: the Hub says 401 RepoNotFound (it might be private), which is not "gated".
    with pytest.raises(HubError) as e:
        hub.repo_details("nobody/Nothing-GGUF")
    assert e.value.kind == "not_found" and e.value.status == 401
    monkeypatch.setenv("HF_TOKEN", "hf_some_token")
    with pytest.raises(HubError) as e:
        hub.repo_details("nobody/Nothing-GGUF")
    assert e.value.kind == "not_found" and e.value.status == 404


def test_the_fake_hub_answers_huggingface_hubs_own_calls(fake_hub):
    """The endpoints the UI may use directly: the tree pager and file metadata (HEAD)."""
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url

    repo = add_model_repo(fake_hub)
    api = HfApi(endpoint=fake_hub.url)
    tree = {f.path: f for f in api.list_repo_tree(repo.repo_id, recursive=True)}
    shard = "BF16/Tiny-BF16-00001-of-00002.gguf"
    assert tree[shard].lfs.sha256 == repo.files[shard].sha256
    assert tree[shard].size == repo.files[shard].size
    top = {f.path for f in api.list_repo_tree(repo.repo_id)}
    assert "BF16" in top and shard not in top
    url = hf_hub_url(repo.repo_id, "Tiny-Q8_0.gguf", revision=repo.sha, endpoint=fake_hub.url)
    meta = get_hf_file_metadata(url)
    assert meta.commit_hash == repo.sha
    assert meta.etag == repo.files["Tiny-Q8_0.gguf"].sha256
    assert meta.size == repo.files["Tiny-Q8_0.gguf"].size
