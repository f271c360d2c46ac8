"""Image-prompt quality figures on real poems: imagery coverage, CLIP budget, syntax, determinism, ComfyUI graph.

Run: .venv/bin/python benchmarks/bench_imageprompt.py

- coverage (lexicon): share of the poem's concrete nouns (listed by hand below) that extraction found;
- coverage (prompt): share that reaches the final prompt, after trimming to the CLIP budget;
- tokens: CLIP tokens of the prompt (start/end included), counted with the real CLIP BPE; max over variations;
- <=77: share of prompts (main, every variation, negative) within 77 tokens;
- syntax: the template parses with dynamicprompts and every (word:w) weight is well formed;
- determ.: rendering twice with the same seed gives byte-identical files (sketch PNG included);
- comfy: the ComfyUI API graph passes the node-graph rules (every link names an existing node output);
- unknown: words the lexicon did not understand (reported in imagery.json);
- theme: rendered again with an artist's theme (THEMES: Chinese ones through the glossary, English ones and
  words in no glossary as written), the prompt leads with the theme's phrase (``lead``) and how much of the
  poem's imagery still reaches the prompt beside it (``cov.themed``).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

from dynamicprompts.parser.parse import parse

from synesthesia.components import RenderContext
from synesthesia_imageprompt import ImagePromptOptions, clip_tokens, comfyui
from synesthesia_imageprompt.render import render

# (title, text, concrete nouns: each a list of accepted English renderings)
POEMS = [
    ("静夜思 李白", "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
     [["bed"], ["moon"], ["frost"], ["ground"], ["hometown", "home"]]),
    ("枫桥夜泊 张继", "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。",
     [["moon"], ["crow"], ["frost"], ["sky"], ["river"], ["maple"], ["lantern"], ["suzhou"], ["city"],
      ["temple"], ["bell"], ["boat"]]),
    ("江雪 柳宗元", "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
     [["mountain"], ["bird"], ["path"], ["figure", "person"], ["boat"], ["cloak", "hat"], ["old man"],
      ["river"], ["snow"]]),
    ("春晓 孟浩然", "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
     [["bird"], ["wind"], ["rain"], ["flower", "petal"]]),
    ("登鹳雀楼 王之涣", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
     [["sun"], ["mountain"], ["yellow river"], ["sea"], ["tower"]]),
    ("鹿柴 王维", "空山不见人，但闻人语响。返景入深林，复照青苔上。",
     [["mountain"], ["figure", "person"], ["forest"], ["moss"], ["light", "sunlight"]]),
    ("天净沙·秋思 马致远", "枯藤老树昏鸦，小桥流水人家，古道西风瘦马。夕阳西下，断肠人在天涯。",
     [["vine"], ["tree"], ["crow"], ["bridge"], ["water"], ["cottage"], ["road"], ["wind"], ["horse"],
      ["sun"], ["figure", "person"], ["horizon"]]),
    ("山行 杜牧", "遠上寒山石徑斜，白雲生處有人家。停車坐愛楓林晚，霜葉紅於二月花。",  # typed in Traditional
     [["mountain"], ["path"], ["cloud"], ["cottage"], ["cart", "carriage"], ["maple"], ["leaves"], ["flower"]]),
    ("早发白帝城 李白", "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。",
     [["baidi"], ["cloud"], ["jiangling"], ["bank", "riverbank"], ["gibbon"], ["boat"], ["mountain"]]),
    ("黄鹤楼送孟浩然之广陵 李白", "故人西辞黄鹤楼，烟花三月下扬州。孤帆远影碧空尽，唯见长江天际流。",
     [["friend"], ["yellow crane tower"], ["mist", "flower"], ["yangzhou"], ["sail"], ["sky"], ["yangtze"],
      ["horizon"]]),
    ("绝句 杜甫", "两个黄鹂鸣翠柳，一行白鹭上青天。窗含西岭千秋雪，门泊东吴万里船。",
     [["oriole"], ["willow"], ["egret"], ["sky"], ["window"], ["ridge"], ["snow"], ["gate", "door"], ["boat"]]),
    ("Sonnet 18 Shakespeare", """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;""",
     [["wind"], ["bud"], ["eye"], ["heaven"], ["complexion"]]),
    ("Sonnet 73 Shakespeare", """That time of year thou mayst in me behold
When yellow leaves, or none, or few, do hang
Upon those boughs which shake against the cold,
Bare ruin'd choirs, where late the sweet birds sang.
In me thou see'st the twilight of such day
As after sunset fadeth in the west,
Which by and by black night doth take away,
Death's second self, that seals up all in rest.""",
     [["leaves"], ["bough"], ["choir"], ["bird"], ["sunset"], ["night"]]),
    ("Old pond Bashō (tr.)", "An old silent pond / A frog jumps into the pond— / Splash! Silence again.",
     [["pond"], ["frog"]]),
    ("Withered branch Bashō (tr.)", "On a withered branch / a crow has alighted: / nightfall in autumn.",
     [["branch"], ["crow"], ["nightfall"]]),
    ("Daffodils Wordsworth", """I wandered lonely as a cloud
That floats on high o'er vales and hills,
When all at once I saw a crowd,
A host, of golden daffodils;
Beside the lake, beneath the trees,
Fluttering and dancing in the breeze.""",
     [["cloud"], ["vale"], ["hill"], ["crowd"], ["daffodil"], ["lake"], ["tree"], ["breeze"]]),
    ("Stopping by Woods Frost", """Whose woods these are I think I know.
His house is in the village though;
He will not see me stopping here
To watch his woods fill up with snow.
My little horse must think it queer
To stop without a farmhouse near
Between the woods and frozen lake
The darkest evening of the year.""",
     [["woods"], ["house"], ["village"], ["snow"], ["horse"], ["farmhouse"], ["lake"], ["evening"]]),
    ("The Eagle Tennyson", """He clasps the crag with crooked hands;
Close to the sun in lonely lands,
Ring'd with the azure world, he stands.
The wrinkled sea beneath him crawls;
He watches from his mountain walls,
And like a thunderbolt he falls.""",
     [["crag"], ["hand"], ["sun"], ["land"], ["sea"], ["mountain"], ["wall"], ["thunderbolt"]]),
    ("To Autumn Keats", """Season of mists and mellow fruitfulness,
Close bosom-friend of the maturing sun;
Conspiring with him how to load and bless
With fruit the vines that round the thatch-eves run;
To bend with apples the moss'd cottage-trees,
And fill all fruit with ripeness to the core;""",
     [["mist"], ["sun"], ["fruit"], ["vine"], ["thatch"], ["apple"], ["cottage"], ["tree"]]),
    ("The Tyger Blake", "Tyger Tyger, burning bright, / In the forests of the night;",
     [["tiger", "tyger"], ["forest"], ["night"]]),
]
WEIGHT = re.compile(r"\(([^():]+):(\d+\.\d)\)")
# A theme per poem, as an artist might have asked for it (some not in the glossary: 眠, 登, Bashō's "frog").
THEMES = {
    "静夜思 李白": "思乡", "枫桥夜泊 张继": "秋夜", "江雪 柳宗元": "江雪", "春晓 孟浩然": "春眠",
    "登鹳雀楼 王之涣": "登楼", "鹿柴 王维": "空山", "天净沙·秋思 马致远": "秋思", "山行 杜牧": "枫林",
    "早发白帝城 李白": "轻舟", "黄鹤楼送孟浩然之广陵 李白": "送别", "绝句 杜甫": "春景",
    "Sonnet 18 Shakespeare": "a summer's day", "Sonnet 73 Shakespeare": "old age",
    "Old pond Bashō (tr.)": "frog pond", "Withered branch Bashō (tr.)": "autumn dusk",
    "Daffodils Wordsworth": "daffodils", "Stopping by Woods Frost": "snowy evening", "The Eagle Tennyson": "eagle",
    "To Autumn Keats": "autumn", "The Tyger Blake": "tiger in the night",
}


def mentions(text: str, accepted: list[str]) -> bool:
    text = text.lower()
    return any(re.search(r"\b" + re.escape(a.lower()) + r"(s|es)?\b", text) for a in accepted)


def weights_well_formed(prompt: str) -> bool:
    stripped = WEIGHT.sub("", prompt)
    return "(" not in stripped and ")" not in stripped


def render_once(text: str, out: Path, seed: int, theme: str = "") -> dict[str, Path]:
    context = RenderContext(text=text, form="", language=None, theme=theme, seed=seed, out_dir=out,
                            options=ImagePromptOptions(variations=8), manifest={"seed": seed})
    return {p.name: p for p in render(context)}


def main() -> int:
    rows = []
    totals = {"gold": 0, "found": 0, "prompt": 0, "fit": 0, "prompts": 0, "themed": 0, "lead": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for n, (title, text, gold) in enumerate(POEMS):
            started = time.perf_counter()
            files = render_once(text, Path(tmp) / f"{n}a", seed=1234)
            seconds = time.perf_counter() - started
            again = render_once(text, Path(tmp) / f"{n}b", seed=1234)
            deterministic = all(files[k].read_bytes() == again[k].read_bytes() for k in files)
            report = json.loads(files["imagery.json"].read_text(encoding="utf-8"))
            prompt = files["prompt.txt"].read_text(encoding="utf-8").strip()
            variations = json.loads(files["variations.json"].read_text(encoding="utf-8"))
            negative = json.loads(files["diffusers_kwargs.json"].read_text(encoding="utf-8"))["negative_prompt"]
            extracted = " | ".join(image["en"] for image in report["images"])
            found = sum(mentions(extracted, g) for g in gold)
            reached = sum(mentions(prompt, g) for g in gold)
            all_prompts = [prompt, negative] + [v["prompt"] for v in variations["prompts"]]
            counts = [clip_tokens.count_tokens(p) for p in all_prompts]
            try:
                parse(variations["template"])
                syntax = all(weights_well_formed(p) for p in [prompt] + [v["prompt"] for v in variations["prompts"]])
            except Exception:
                syntax = False
            graph = json.loads(files["comfyui_workflow.json"].read_text(encoding="utf-8"))["prompt"]
            comfy_ok = comfyui.validate_graph(graph) == []
            themed = render_once(text, Path(tmp) / f"{n}t", seed=1234, theme=THEMES[title])
            themed_prompt = themed["prompt.txt"].read_text(encoding="utf-8").strip()
            used = json.loads(themed["imagery.json"].read_text(encoding="utf-8"))["theme"]
            first = WEIGHT.sub(r"\1", themed_prompt.split(", ")[0])
            leads = bool(used["phrase"]) and first == used["phrase"] and used["leads_prompt"]
            themed_reached = sum(mentions(themed_prompt, g) for g in gold)
            totals["themed"] += themed_reached
            totals["lead"] += leads
            totals["gold"] += len(gold)
            totals["found"] += found
            totals["prompt"] += reached
            totals["fit"] += sum(c <= 77 for c in counts)
            totals["prompts"] += len(counts)
            rows.append((title, f"{found}/{len(gold)}", f"{reached}/{len(gold)}", counts[0],
                         max(counts[2:] or [0]), f"{sum(c <= 77 for c in counts)}/{len(counts)}",
                         "ok" if syntax else "FAIL", "ok" if deterministic else "FAIL",
                         "ok" if comfy_ok else "FAIL", len(report["not_understood"]), f"{seconds:.2f}",
                         f"{THEMES[title]} → {used['phrase']}", "ok" if leads else "FAIL",
                         f"{themed_reached}/{len(gold)}"))

    header = ("poem", "cov.lex", "cov.prompt", "tokens", "max var", "<=77", "syntax", "determ.", "comfy",
              "unknown", "render s", "theme → prompt", "lead", "cov.themed")
    widths = [max(_width(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(_pad(str(v), w) for v, w in zip(r, widths, strict=True))  # noqa: E731
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    print()
    print(f"imagery coverage, lexicon: {totals['found']}/{totals['gold']} = {totals['found'] / totals['gold']:.1%}")
    print(f"imagery coverage, prompt:  {totals['prompt']}/{totals['gold']} = {totals['prompt'] / totals['gold']:.1%}")
    fit, prompts = totals["fit"], totals["prompts"]
    print(f"prompts within 77 CLIP tokens: {fit}/{prompts} = {fit / prompts:.1%}")
    print(f"prompts leading with the theme: {totals['lead']}/{len(rows)} = {totals['lead'] / len(rows):.1%}")
    print(f"imagery coverage, prompt with theme: {totals['themed']}/{totals['gold']} = "
          f"{totals['themed'] / totals['gold']:.1%}")
    ok = (all(r[6] == r[7] == r[8] == r[12] == "ok" for r in rows) and totals["fit"] == totals["prompts"])
    return 0 if ok else 1


def _width(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


if __name__ == "__main__":
    sys.exit(main())
