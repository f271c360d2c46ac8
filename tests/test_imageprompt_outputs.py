"""The imageprompt renderer's files, parsed back: A1111 text, ComfyUI graph (posted to a loopback server),
diffusers kwargs, imagery report, variations and the sketch PNG; and a pipeline artwork with all of them."""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from instant_clip_tokenizer import Tokenizer
from PIL import Image

from synesthesia.components import RenderContext
from synesthesia.errors import SynesthesiaError
from synesthesia_imageprompt import ImagePromptOptions, comfyui
from synesthesia_imageprompt.render import render

FENG_QIAO_YE_BO = "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。"
JING_YE_SI_TRADITIONAL = "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"
SONNET_18 = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;"""
FILES = {"prompt.txt", "a1111_parameters.txt", "comfyui_workflow.json", "diffusers_kwargs.json",
         "variations.json", "imagery.json", "sketch.png"}
WEIGHT = re.compile(r"\(([^():]+):(\d+\.\d)\)")

# What a ComfyUI server knows of these node types: the number and types of outputs, the required inputs.
COMFY_OUTPUTS = {"CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"], "CLIPTextEncode": ["CONDITIONING"],
                 "EmptyLatentImage": ["LATENT"], "KSampler": ["LATENT"], "VAEDecode": ["IMAGE"], "SaveImage": []}
COMFY_REQUIRED = {"CheckpointLoaderSimple": {"ckpt_name"}, "CLIPTextEncode": {"text", "clip"},
                  "EmptyLatentImage": {"width", "height", "batch_size"},
                  "KSampler": {"model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                               "negative", "latent_image", "denoise"},
                  "VAEDecode": {"samples", "vae"}, "SaveImage": {"images", "filename_prefix"}}
KNOWN_CHECKPOINTS = {"v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"}


def comfy_node_errors(graph: dict) -> dict:
    """The structural part of ComfyUI's validate_prompt, written independently of the plugin."""
    errors: dict[str, list[str]] = {}
    for node_id, node in graph.items():
        problems = []
        class_type = node.get("class_type")
        if class_type not in COMFY_OUTPUTS:
            errors[node_id] = [f"unknown class_type {class_type}"]
            continue
        missing = COMFY_REQUIRED[class_type] - set(node["inputs"])
        problems += [f"required input missing: {m}" for m in sorted(missing)]
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                source, index = value
                if source not in graph:
                    problems.append(f"{name}: link to missing node {source}")
                elif not 0 <= index < len(COMFY_OUTPUTS[graph[source]["class_type"]]):
                    problems.append(f"{name}: output {index} of node {source} does not exist")
        if class_type == "CheckpointLoaderSimple" and node["inputs"].get("ckpt_name") not in KNOWN_CHECKPOINTS:
            problems.append("ckpt_name: value not in list")
        if problems:
            errors[node_id] = problems
    return errors


@pytest.fixture
def comfy_server():
    """A loopback HTTP server answering POST /prompt the way ComfyUI does (200 with prompt_id, or 400)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            graph = body.get("prompt")
            errors = comfy_node_errors(graph) if isinstance(graph, dict) else {"": ["no prompt"]}
            if not any(n.get("class_type") == "SaveImage" for n in (graph or {}).values()):
                errors.setdefault("", []).append("prompt has no outputs")
            if errors:
                status, answer = 400, {"error": {"type": "prompt_outputs_failed_validation"}, "node_errors": errors}
            elif self.path != "/prompt":
                status, answer = 404, {"error": "not found"}
            else:
                status, answer = 200, {"prompt_id": str(uuid.uuid4()), "number": len(received) - 1, "node_errors": {}}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def render_poem(text: str, out: Path, seed: int = 7, language=None, **options) -> dict[str, Path]:
    context = RenderContext(text=text, form="", language=language, theme="", seed=seed, out_dir=out,
                            options=ImagePromptOptions(**options), manifest={"seed": seed, "model": {"name": "test"}})
    return {p.name: p for p in render(context)}


def parse_a1111(text: str) -> dict:
    """Parse A1111 "parameters" text the way its "Read generation parameters" does: prompt, negative, settings."""
    lines = text.strip().split("\n")
    settings = dict(re.findall(r"\s*([\w ]+):\s*([^,]+)(?:,|$)", lines[-1]))
    negative = lines[-2][len("Negative prompt: "):] if lines[-2].startswith("Negative prompt: ") else None
    return {"prompt": "\n".join(lines[:-2]), "negative": negative, **settings}


def test_chinese_poem_writes_every_format(tmp_path):
    files = render_poem(FENG_QIAO_YE_BO, tmp_path, seed=7)
    assert set(files) == FILES
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind
    prompt_text = files["prompt.txt"].read_text(encoding="utf-8").strip()
    assert prompt_text.startswith("(setting moon:1.3), (crows crying:1.2), (frost:1.1), "
                                  "traditional Chinese ink wash painting")
    assert len(Tokenizer().encode(WEIGHT.sub(r"\1", prompt_text))) + 2 <= 77

    a1111 = parse_a1111(files["a1111_parameters.txt"].read_text(encoding="utf-8"))
    assert a1111["prompt"] == prompt_text
    assert "watermark" in a1111["negative"]
    assert (a1111["Steps"], a1111["Sampler"], a1111["CFG scale"], a1111["Seed"], a1111["Size"]) == (
        "30", "DPM++ 2M Karras", "7", "7", "768x512")

    kwargs = json.loads(files["diffusers_kwargs.json"].read_text(encoding="utf-8"))
    assert set(kwargs) == {"prompt", "negative_prompt", "num_inference_steps", "guidance_scale", "width",
                           "height", "seed"}
    assert kwargs["prompt"] == WEIGHT.sub(r"\1", prompt_text) and "(" not in kwargs["prompt"]
    assert (kwargs["num_inference_steps"], kwargs["guidance_scale"], kwargs["seed"]) == (30, 7.0, 7)
    assert kwargs["negative_prompt"] == a1111["negative"]

    report = json.loads(files["imagery.json"].read_text(encoding="utf-8"))
    assert report["language"] == "zh" and report["style"] == "ink-wash" and report["seed"] == 7
    assert {"Hanshan Temple", "frost", "crows"} <= {i["en"] for i in report["images"]}
    assert report["clip_tokens"] <= 77 and isinstance(report["not_understood"], list)

    variations = json.loads(files["variations.json"].read_text(encoding="utf-8"))
    assert len(variations["prompts"]) == 4 and "{" in variations["template"]
    assert all(v["clip_tokens"] <= 77 for v in variations["prompts"])


def test_comfyui_graph_follows_the_node_rules(tmp_path):
    files = render_poem(SONNET_18, tmp_path, seed=99, sampler="euler_a", width=512, height=768, steps=20)
    body = json.loads(files["comfyui_workflow.json"].read_text(encoding="utf-8"))
    graph = body["prompt"]
    assert sorted(n["class_type"] for n in graph.values()) == sorted(
        ["CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
         "VAEDecode", "SaveImage"])
    assert comfy_node_errors(graph) == {} and comfyui.validate_graph(graph) == []
    sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["sampler_name"], sampler["scheduler"]) == (
        99, 20, "euler_ancestral", "normal")
    positive = graph[sampler["positive"][0]]["inputs"]["text"]
    negative = graph[sampler["negative"][0]]["inputs"]["text"]
    assert positive == files["prompt.txt"].read_text(encoding="utf-8").strip() and "blurry" in negative
    latent = graph[sampler["latent_image"][0]]["inputs"]
    assert (latent["width"], latent["height"]) == (512, 768)
    manifest = body["extra_data"]["extra_pnginfo"]["synesthesia-manifest"]
    assert manifest["imageprompt"]["seed"] == 99


def test_plugin_validator_catches_broken_links():
    body = comfyui.build_workflow(prompt="moon", negative="blurry", seed=1, steps=10, cfg=7, sampler_name="euler",
                                  scheduler="normal", width=512, height=512, checkpoint="x.safetensors")
    broken = copy.deepcopy(body["prompt"])
    broken["8"]["inputs"]["vae"] = ["4", 3]  # the checkpoint loader has outputs 0..2
    assert any("output 3" in p for p in comfyui.validate_graph(broken))
    broken = copy.deepcopy(body["prompt"])
    broken["3"]["inputs"]["positive"] = ["5", 0]  # a LATENT where CONDITIONING is expected
    assert any("expects CONDITIONING" in p for p in comfyui.validate_graph(broken))
    broken = copy.deepcopy(body["prompt"])
    del broken["9"]
    assert any("no output node" in p for p in comfyui.validate_graph(broken))
    broken = copy.deepcopy(body["prompt"])
    broken["6"]["inputs"]["clip"] = ["42", 1]
    assert comfy_node_errors(broken) and any("missing node" in p for p in comfyui.validate_graph(broken))


def test_submit_to_comfyui_over_http(tmp_path, comfy_server):
    url, received = comfy_server
    files = render_poem(FENG_QIAO_YE_BO, tmp_path)
    body = json.loads(files["comfyui_workflow.json"].read_text(encoding="utf-8"))
    answer = comfyui.submit_to_comfyui(url, body)
    assert uuid.UUID(answer["prompt_id"]) and answer["node_errors"] == {}
    assert received[-1] == body  # the server got exactly the file's graph

    # A graph the server refuses (a checkpoint it does not have): the HTTP 400 becomes a clear error.
    body["prompt"]["4"]["inputs"]["ckpt_name"] = "missing.safetensors"
    with pytest.raises(SynesthesiaError, match="HTTP 400"):
        comfyui.submit_to_comfyui(url, body)
    # A broken graph never leaves the machine.
    sent = len(received)
    body["prompt"]["8"]["inputs"]["samples"] = ["77", 0]
    with pytest.raises(SynesthesiaError, match="missing node"):
        comfyui.submit_to_comfyui(url, body)
    assert len(received) == sent


def test_submit_to_a_closed_port_says_so():
    body = comfyui.build_workflow(prompt="moon", negative="", seed=1, steps=10, cfg=7, sampler_name="euler",
                                  scheduler="normal", width=512, height=512, checkpoint="x.safetensors")
    with pytest.raises(SynesthesiaError, match="cannot reach ComfyUI"):
        comfyui.submit_to_comfyui("http://127.0.0.1:9", body, timeout=5)


def test_sketch_png_carries_the_manifest_and_is_deterministic(tmp_path):
    zh = render_poem(JING_YE_SI_TRADITIONAL, tmp_path / "zh", seed=5, width=512, height=384)
    with Image.open(zh["sketch.png"]) as png:
        assert png.size == (512, 384) and png.mode == "RGB"
        manifest = json.loads(png.text["synesthesia-manifest"])
        pixels = np.asarray(png.convert("RGB"), dtype=np.int16)
    assert manifest["seed"] == 5 and manifest["imageprompt"]["style"] == "ink-wash"
    assert manifest["imageprompt"]["prompt"] == zh["prompt.txt"].read_text(encoding="utf-8").strip()
    # Ink wash: warm paper at the top, a cinnabar seal in the bottom-right corner.
    top = pixels[:40].reshape(-1, 3).mean(axis=0)
    assert top[0] > 200 and top[0] > top[2]
    corner = pixels[-70:, -70:].reshape(-1, 3)
    assert ((corner[:, 0] > 150) & (corner[:, 1] < 80) & (corner[:, 2] < 80)).any()

    again = render_poem(JING_YE_SI_TRADITIONAL, tmp_path / "again", seed=5, width=512, height=384)
    other = render_poem(JING_YE_SI_TRADITIONAL, tmp_path / "other", seed=6, width=512, height=384)
    assert again["sketch.png"].read_bytes() == zh["sketch.png"].read_bytes()
    assert other["sketch.png"].read_bytes() != zh["sketch.png"].read_bytes()
    for name in ("prompt.txt", "a1111_parameters.txt", "comfyui_workflow.json", "variations.json"):
        assert again[name].read_text(encoding="utf-8") == zh[name].read_text(encoding="utf-8")

    en = render_poem(SONNET_18, tmp_path / "en", seed=5, width=512, height=384)
    with Image.open(en["sketch.png"]) as png:
        assert json.loads(png.text["synesthesia-manifest"])["imageprompt"]["style"] == "watercolour"
        colour = np.asarray(png.convert("RGB"), dtype=np.int16)
    assert np.abs(colour - pixels).mean() > 10  # a colour sketch, not the ink one


def test_sketch_can_be_switched_off(tmp_path):
    files = render_poem(SONNET_18, tmp_path, sketch=False)
    assert set(files) == FILES - {"sketch.png"} and not (tmp_path / "sketch.png").exists()


def test_pipeline_artwork_for_a_chinese_and_an_english_poem(tmp_path):
    from synesthesia.pipeline import finish_artwork, new_staging
    from synesthesia.plugins import get_registry, validate_options

    registry = get_registry()
    renderer = registry.renderer("imageprompt")  # found through the installed entry point
    for name, text, language in (("zh", FENG_QIAO_YE_BO, "zh"), ("en", SONNET_18, "en")):
        run_dir = tmp_path / name
        options = validate_options(renderer, {"style": "auto", "variations": 2})
        manifest = {"seed": 11, "intent": {"language": language, "form": ""}, "model": {"name": "test"}}
        artwork = finish_artwork(run_dir, new_staging(run_dir), text, manifest, [(renderer, options)],
                                 fail_on_error=True, registry=registry)
        written = {p.name for p in (artwork.path / "imageprompt").iterdir()}
        assert written == FILES
        assert manifest["renderers"]["imageprompt"]["error"] is None
        assert {f"imageprompt/{f}" for f in FILES} <= set(manifest["files"])
        kwargs = json.loads((artwork.path / "imageprompt" / "diffusers_kwargs.json").read_text(encoding="utf-8"))
        assert kwargs["seed"] == 11


def test_manifest_values_json_lacks_are_written_as_text(tmp_path):
    context = RenderContext(text=SONNET_18, form="sonnet", language="en", theme="", seed=3, out_dir=tmp_path,
                            options=ImagePromptOptions(style="pencil", sketch=True),
                            manifest={"seed": 3, "run_dir": tmp_path})
    files = {p.name: p for p in render(context)}
    body = json.loads(files["comfyui_workflow.json"].read_text(encoding="utf-8"))
    assert body["extra_data"]["extra_pnginfo"]["synesthesia-manifest"]["run_dir"] == str(tmp_path)
    with Image.open(files["sketch.png"]) as png:
        pixels = np.asarray(png.convert("RGB"), dtype=np.int16)
    corner = pixels[-70:, -70:].reshape(-1, 3)
    # A pencil drawing of an English sonnet: monochrome paper, and no Chinese seal.
    assert not ((corner[:, 0] > 150) & (corner[:, 1] < 80) & (corner[:, 2] < 80)).any()
