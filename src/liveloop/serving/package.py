"""Package the champion for serving: one BentoML model holding everything the service needs, then a bento.

Model folder layout (all safetensors / JSON / parquet, no pickle):
  model/               the champion model dir (weights, config.json, state.json, encoder/ tokenizer)
  index.safetensors    item_vectors [n, d] (item tower) and item_base [n, d] (frozen text vectors), row i = items row i
  items.parquet        the catalog (schema columns)
  streams.parquet      the latest accepted batch's live rooms (start, end, item_ids): availability
  rooms.parquet        every accepted room's host (so a user's history knows whose rooms they bought in)
  history.parquet      each user's recent behaviour events (user-tower sequence, ranker counts)
  package.json         model version, data hashes, serve config
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from liveloop.config import Config
from liveloop.data.batches import concat_batches, list_batches, read_batch
from liveloop.workspace import Workspace

MODEL_NAME = "liveloop-recommender"
BENTO_NAME = "liveloop"
MODEL_DIR, INDEX_FILE, ITEMS_FILE, STREAMS_FILE = "model", "index.safetensors", "items.parquet", "streams.parquet"
ROOMS_FILE = "rooms.parquet"
HISTORY_FILE, PACKAGE_FILE = "history.parquet", "package.json"
SKIPPED_MODEL_FILES = {"optimizer.safetensors"}  # training state the service never reads
REPO = Path(__file__).resolve().parents[3]


class PackagingError(RuntimeError):
    """Nothing to package (no champion, no accepted data) or the bento build failed."""


def batch_hash(batch_dir: Path) -> str:
    """sha256 over a batch's files (names and bytes): identifies the exact data the index was built from."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(batch_dir).iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def save_champion_model(cfg: Config, ws: Workspace) -> str:
    """Save the champion + its item index to the BentoML model store (BENTOML_HOME); returns the model tag."""
    import bentoml
    from safetensors.numpy import save_file

    from liveloop.model.recommender import Recommender
    from liveloop.model.text import item_texts
    from liveloop.registry import champion_dir, champion_version
    from liveloop.serving.state import behaviour_events

    source = champion_dir(ws)
    if source is None:
        raise PackagingError(f"no champion to package: {ws.champion_pointer} does not exist (train and promote first)")
    batches = list_batches(ws.accepted)
    if not batches:
        raise PackagingError(f"no accepted batches under {ws.accepted}: the item index needs a catalog")
    history = concat_batches(batches)
    latest_streams = read_batch(batches[-1])["streams"]
    items = history["items"]
    model = Recommender.load(source, cache_dir=ws.state / "vectors")
    if cfg.serve.history_keep_events < model.config.history_window:
        raise PackagingError(f"serve.history_keep_events ({cfg.serve.history_keep_events}) is below the champion's "
                             f"history_window ({model.config.history_window}): the service would show its user tower "
                             "a shorter history than training did")
    texts = item_texts(items, history["streams"])
    base = model.base_vectors([texts[i] for i in items["item_id"].astype(str)])
    vectors = model.item_vectors(base)
    behaviour = behaviour_events(history["events"]).sort_values("ts")
    behaviour = behaviour.groupby("user_id", sort=False).tail(cfg.serve.history_keep_events)
    data_hashes = {b.name: batch_hash(b) for b in batches}
    combined = hashlib.sha256(json.dumps(data_hashes, sort_keys=True).encode()).hexdigest()
    version = champion_version(ws)
    labels = {"model_version": version, "data_latest": batches[-1].name, "data_sha256": combined[:16]}
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata={"data_hashes": data_hashes}) as stored:
        out = Path(stored.path)
        shutil.copytree(source, out / MODEL_DIR, ignore=lambda _d, names: [n for n in names if n in SKIPPED_MODEL_FILES])
        save_file({"item_vectors": vectors, "item_base": base}, str(out / INDEX_FILE))
        items.to_parquet(out / ITEMS_FILE, index=False)
        latest_streams.to_parquet(out / STREAMS_FILE, index=False)
        history["streams"][["stream_id", "host_id"]].drop_duplicates("stream_id").to_parquet(out / ROOMS_FILE, index=False)
        behaviour.to_parquet(out / HISTORY_FILE, index=False)
        (out / PACKAGE_FILE).write_text(json.dumps({
            "model_version": version, "source": str(source), "data_hashes": data_hashes,
            "serve": cfg.serve.model_dump(mode="json"), "items": len(items), "dim": int(vectors.shape[1]),
        }, indent=2))
    return str(stored.tag)


def build_bento(bentofile: Path = REPO / "bentofile.yaml", gpu: bool = False) -> str:
    """Build a bento from bentofile.yaml with src/ as the build context (BENTOML_HOME stays outside it); with `gpu`,
    BentoML's CUDA image and one GPU in the service's resources (serving/gpu.py)."""
    import tempfile

    import bentoml

    from liveloop.serving.gpu import GPU_ARG, gpu_build

    if not bentofile.exists():
        raise PackagingError(f"bentofile not found: {bentofile}")
    with tempfile.TemporaryDirectory() as tmp:
        spec = gpu_build(bentofile, Path(tmp) / "bentofile.yaml") if gpu else bentofile
        try:
            bento = bentoml.bentos.build_bentofile(str(spec), build_ctx=str(bentofile.parent / "src"),
                                                   args={GPU_ARG: gpu})
        except Exception as exc:  # bentoml raises many types; the message is what the user needs
            raise PackagingError(f"bento build failed: {exc}") from exc
    return str(bento.tag)


def package_champion(cfg: Config, ws: Workspace, build: bool = True) -> dict[str, str]:
    """Save the champion to the model store and (optionally) build the bento; returns their tags."""
    tags = {"model": save_champion_model(cfg, ws)}
    if build:
        tags["bento"] = build_bento(gpu=cfg.serve.gpu)
    return tags
