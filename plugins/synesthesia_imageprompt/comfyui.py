"""ComfyUI hand-off: the default text-to-image graph in API format, its structural check, and submission.

The body written to ``comfyui_workflow.json`` is exactly what ComfyUI's ``POST /prompt`` accepts:
``{"prompt": {node_id: {"class_type": ..., "inputs": {...}}}, "extra_data": {...}}``. An input that is a link
is ``[node_id, output_index]``. ``extra_data.extra_pnginfo`` is embedded by ComfyUI's SaveImage into the PNGs it
writes, so the images a server makes carry our manifest too.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from synesthesia.errors import SynesthesiaError

# The node types of the default graph as ComfyUI defines them: required inputs -> type, and output types.
# A type in capitals is a link type; INT/FLOAT/STRING are widget values (COMBO: a string from a list).
NODE_TYPES: dict[str, dict[str, Any]] = {
    "CheckpointLoaderSimple": {"inputs": {"ckpt_name": "COMBO"}, "outputs": ["MODEL", "CLIP", "VAE"]},
    "CLIPTextEncode": {"inputs": {"text": "STRING", "clip": "CLIP"}, "outputs": ["CONDITIONING"]},
    "EmptyLatentImage": {"inputs": {"width": "INT", "height": "INT", "batch_size": "INT"}, "outputs": ["LATENT"]},
    "KSampler": {
        "inputs": {
            "model": "MODEL", "seed": "INT", "steps": "INT", "cfg": "FLOAT", "sampler_name": "COMBO",
            "scheduler": "COMBO", "positive": "CONDITIONING", "negative": "CONDITIONING",
            "latent_image": "LATENT", "denoise": "FLOAT",
        },
        "outputs": ["LATENT"],
    },
    "VAEDecode": {"inputs": {"samples": "LATENT", "vae": "VAE"}, "outputs": ["IMAGE"]},
    "SaveImage": {"inputs": {"images": "IMAGE", "filename_prefix": "STRING"}, "outputs": [], "output_node": True},
}
WIDGET_TYPES = {"INT": int, "FLOAT": (int, float), "STRING": str, "COMBO": str}


def build_workflow(
    *, prompt: str, negative: str, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
    width: int, height: int, checkpoint: str, filename_prefix: str = "synesthesia", manifest: dict | None = None,
) -> dict:
    """The ``POST /prompt`` body for a checkpoint -> two text encoders -> KSampler -> VAE decode -> save graph."""
    graph = {
        "4": _node("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name=checkpoint),
        "6": _node("CLIPTextEncode", "Positive prompt", text=prompt, clip=["4", 1]),
        "7": _node("CLIPTextEncode", "Negative prompt", text=negative, clip=["4", 1]),
        "5": _node("EmptyLatentImage", "Empty Latent Image", width=width, height=height, batch_size=1),
        "3": _node(
            "KSampler", "KSampler", seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name,
            scheduler=scheduler, denoise=1.0, model=["4", 0], positive=["6", 0], negative=["7", 0],
            latent_image=["5", 0],
        ),
        "8": _node("VAEDecode", "VAE Decode", samples=["3", 0], vae=["4", 2]),
        "9": _node("SaveImage", "Save Image", filename_prefix=filename_prefix, images=["8", 0]),
    }
    body: dict[str, Any] = {"prompt": graph}
    if manifest is not None:
        body["extra_data"] = {"extra_pnginfo": {"synesthesia-manifest": manifest}}
    return body


def _node(class_type: str, title: str, **inputs: Any) -> dict:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


def validate_graph(graph: dict) -> list[str]:
    """Problems ComfyUI's prompt validation would report for this API-format graph (empty: valid).

    Checks: known node types; required inputs present; widget values of the right type; each link is
    ``[node_id, output_index]`` naming an existing node with that output, of the type the input expects;
    at least one output node; no cycles.
    """
    problems: list[str] = []
    if not isinstance(graph, dict) or not graph:
        return ["the graph is not a non-empty object of nodes"]
    for node_id, node in graph.items():
        spec = NODE_TYPES.get(node.get("class_type")) if isinstance(node, dict) else None
        if spec is None:
            problems.append(f"node {node_id}: unknown or missing class_type")
            continue
        inputs = node.get("inputs", {})
        for name, kind in spec["inputs"].items():
            if name not in inputs:
                problems.append(f"node {node_id} ({node['class_type']}): required input {name!r} missing")
                continue
            value = inputs[name]
            if kind in WIDGET_TYPES:
                if isinstance(value, bool) or not isinstance(value, WIDGET_TYPES[kind]):
                    problems.append(f"node {node_id}: input {name!r} should be {kind}, got {value!r}")
                continue
            problems.extend(_check_link(graph, node_id, name, value, kind))
    nodes = [n for n in graph.values() if isinstance(n, dict)]
    if not any(NODE_TYPES.get(n.get("class_type"), {}).get("output_node") for n in nodes):
        problems.append("the graph has no output node (e.g. SaveImage)")
    if not problems and _has_cycle(graph):
        problems.append("the graph has a cycle")
    return problems


def _check_link(graph: dict, node_id: str, name: str, value: Any, kind: str) -> list[str]:
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)):
        return [f"node {node_id}: input {name!r} should be a link [node_id, output_index], got {value!r}"]
    source_id, index = value
    source = graph.get(source_id)
    if source is None:
        return [f"node {node_id}: input {name!r} links to missing node {source_id!r}"]
    outputs = NODE_TYPES.get(source.get("class_type"), {}).get("outputs", [])
    if not 0 <= index < len(outputs):
        return [f"node {node_id}: input {name!r} links to output {index} of node {source_id}, "
                f"which has {len(outputs)}"]
    if outputs[index] != kind:
        return [f"node {node_id}: input {name!r} expects {kind}, "
                f"output {index} of node {source_id} is {outputs[index]}"]
    return []


def _has_cycle(graph: dict) -> bool:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node_id: str) -> bool:
        if state.get(node_id) == 1:
            return True
        if state.get(node_id) == 2:
            return False
        state[node_id] = 1
        for value in graph[node_id].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2 and value[0] in graph and visit(value[0]):
                return True
        state[node_id] = 2
        return False

    return any(visit(node_id) for node_id in graph)


def submit_to_comfyui(url: str, body: dict, *, timeout: float = 30.0) -> dict:
    """POST ``body`` to a ComfyUI server's ``/prompt``; returns its answer (``prompt_id``, ``number``, ...).

    ``url`` is the server root, e.g. ``http://127.0.0.1:8188``. The graph is checked first, so a broken one
    is reported here, naming the node, rather than by the server.
    """
    problems = validate_graph(body.get("prompt", {}))
    if problems:
        raise SynesthesiaError("ComfyUI workflow is invalid: " + "; ".join(problems))
    request = urllib.request.Request(
        url.rstrip("/") + "/prompt",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", "replace")[:500]
        raise SynesthesiaError(f"ComfyUI at {url} refused the workflow (HTTP {error.code}): {detail}") from error
    except (urllib.error.URLError, OSError) as error:
        raise SynesthesiaError(f"cannot reach ComfyUI at {url}: {error}; is the server running?") from error
