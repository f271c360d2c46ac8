// Synesthesia gallery: the newest artworks from /v1/artworks, new ones live from /v1/events (server-sent
// events), each with its poem (classical Chinese in vertical columns read right to left, English centred),
// its sketch, its melody playing in the page, downloads, and its provenance one click away.
// Everything comes from this server; no data is ever written into the page as HTML.
"use strict";

(() => {
  const CLASSICAL = new Set(["五绝", "七绝", "五律", "七律", "藏头诗"]);
  const PUNCTUATION = /[，。！？；：、,.!?;:「」『』（）()《》〈〉…—\-·]/u;
  const MAX_CARDS = 60;
  const DOWNLOADS = [
    ["midi/melody.mid", "MIDI"], ["midi/melody.wav", "WAV"], ["imageprompt/prompt.txt", "prompt"],
    ["imageprompt/comfyui_workflow.json", "ComfyUI workflow"], ["imageprompt/a1111_parameters.txt", "A1111"],
    ["imageprompt/diffusers_kwargs.json", "diffusers"], ["imageprompt/variations.json", "variations"],
    ["poem_html/poem.html", "page"], ["poem_png/poem.png", "PNG"], ["poem_svg/poem.svg", "SVG"],
    ["poem_text/poem.txt", "text"], ["poem_text/scene.fountain", "Fountain"], ["manifest.json", "manifest"],
  ];

  const $ = (selector, root = document) => root.querySelector(selector);
  const cards = new Map(); // artwork id -> its <article>
  let query = "";

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function fileUrl(art, path) {
    const base = art.files_url || `/v1/artworks/${encodeURIComponent(art.id)}/files/`;
    return base + path.split("/").map(encodeURIComponent).join("/");
  }

  const isHan = (ch) => /\p{Script=Han}/u.test(ch);

  // Verse lines as columns: split at line breaks and at punctuation, punctuation dropped (as on a scroll).
  function columnsOf(text) {
    const columns = [];
    for (const line of String(text || "").split("\n")) {
      let current = "";
      for (const ch of line.trim()) {
        if (PUNCTUATION.test(ch) || /\s/u.test(ch)) {
          if (current) columns.push(current);
          current = "";
        } else current += ch;
      }
      if (current) columns.push(current);
    }
    return columns;
  }

  function isVertical(art) {
    const text = String(art.text || "");
    const chinese = art.language === "zh" || [...text].some(isHan);
    if (!chinese || art.form === "screenplay") return false;
    const columns = columnsOf(text);
    return CLASSICAL.has(art.form) || (columns.length > 0 && columns.every((c) => [...c].length <= 12));
  }

  function titleOf(art) {
    if (art.title) return art.title;
    const theme = String(art.theme || "").trim();
    if (theme) return art.language === "zh" ? theme : theme.replace(/\b\p{L}/gu, (c) => c.toUpperCase());
    return art.language === "zh" ? "无题" : "Untitled";
  }

  function byline(art) {
    return [art.model, art.form, art.seed !== undefined && art.seed !== null ? `seed ${art.seed}` : null,
            art.revision > 1 ? `revision ${art.revision}` : null].filter(Boolean).join(" · ");
  }

  function buildPoem(art) {
    const vertical = isVertical(art);
    const text = String(art.text || "");
    const lang = art.language || ([...text].some(isHan) ? "zh" : "en");
    const poem = el("div", {className: `poem ${vertical ? "vertical" : art.form === "screenplay" ? "script" : "horizontal"}`,
                            lang});
    poem.append(el("h2", {className: "title", text: titleOf(art)}));
    poem.append(el("p", {className: "byline", text: byline(art)}));
    const verse = el("div", {className: "verse"});
    if (vertical) {
      for (const column of columnsOf(text)) verse.append(el("p", {text: column}));
    } else if (art.form === "screenplay") {
      verse.textContent = text;
    } else {
      for (const stanza of text.split(/\n\s*\n/)) {
        const block = el("div", {className: "stanza"});
        for (const line of stanza.split("\n")) if (line.trim()) block.append(el("p", {text: line.trim()}));
        verse.append(block);
      }
    }
    poem.append(verse);
    if (art.valid === false) poem.append(el("p", {className: "byline invalid", text: "does not obey its form"}));
    return poem;
  }

  // Some CJK fonts advance less than a glyph down a column (a vmtx of zeros): the characters would pile up.
  // Measure one character's advance; if it is short, set every character in a one-em cell instead.
  function ensureColumns(poem) {
    if (!poem.classList.contains("vertical") || poem.dataset.cells) return;
    const first = poem.querySelector(".verse p");
    const node = first && first.firstChild;
    if (!node || node.nodeType !== Node.TEXT_NODE || node.data.length < 2) return;
    const range = document.createRange();
    range.setStart(node, 0);
    range.setEnd(node, 1);
    const a = range.getBoundingClientRect();
    range.setStart(node, 1);
    range.setEnd(node, 2);
    const b = range.getBoundingClientRect();
    const size = parseFloat(getComputedStyle(first).fontSize);
    if (b.top - a.top >= 0.8 * size) return;
    for (const p of poem.querySelectorAll(".verse p, .title")) {
      const chars = [...p.textContent];
      p.textContent = "";
      for (const ch of chars) p.append(el("span", {className: "cell", text: ch}));
    }
    poem.dataset.cells = "1";
  }

  function fit(poem) {
    ensureColumns(poem);
    const panel = poem.parentElement;
    panel.classList.toggle("wide", poem.getBoundingClientRect().width > panel.clientWidth + 1);
  }

  function downloads(art) {
    const files = new Set(art.files || []);
    const list = el("ul", {className: "downloads"});
    for (const [path, label] of DOWNLOADS) {
      if (!files.has(path)) continue;
      list.append(el("li", {}, el("a", {href: fileUrl(art, path), download: `${art.id}-${path.split("/").pop()}`,
                                        text: label, "data-file": path})));
    }
    return list;
  }

  function short(hash) {
    return typeof hash === "string" && hash.length > 16 ? `${hash.slice(0, 12)}…` : String(hash ?? "");
  }

  function provenance(detail) {
    const m = detail.manifest || {};
    const model = m.model || {};
    const gen = m.generation || {};
    const intent = m.intent || {};
    const validation = m.validation || {};
    const rows = [
      ["model", [model.name, model.generator, model.inference_dtype].filter(Boolean).join(" · ")],
      ["checkpoint", model.sha256 ? `sha256 ${short(model.sha256)}` : ""],
      ["parameters", model.parameters ? Number(model.parameters).toLocaleString("en") : ""],
      ["seed", m.seed],
      ["form", [intent.form, intent.language].filter(Boolean).join(" · ")],
      ["theme", intent.theme],
      ["sampling", [gen.temperature !== undefined ? `temperature ${gen.temperature}` : "",
                    gen.top_k ? `top-k ${gen.top_k}` : "", gen.top_p ? `top-p ${gen.top_p}` : "",
                    gen.candidates ? `${gen.candidates} candidates` : ""].filter(Boolean).join(", ")],
      ["form check", validation.ok === undefined ? "" : validation.ok ? "obeys the form"
        : `does not obey: ${(validation.problems || []).slice(0, 3).join("; ")}`],
      ["created", m.created],
      ["synesthesia", m.synesthesia_version],
      ["plugins", (m.plugins || []).map((p) => `${p.name} ${p.version || ""}`.trim()).join(", ")],
    ];
    const dl = el("dl");
    for (const [key, value] of rows) {
      if (value === undefined || value === null || value === "") continue;
      dl.append(el("dt", {text: key}), el("dd", {text: String(value), title: key === "checkpoint" ? model.sha256 : null}));
    }
    const body = el("div", {className: "provenance-body"}, dl);
    const revisions = m.revisions || [];
    if (revisions.length) {
      const table = el("table", {className: "revisions"},
                       el("caption", {text: "revision history"}),
                       el("tr", {}, el("th", {text: "rev"}), el("th", {text: "source"}), el("th", {text: "created"}),
                          el("th", {text: "text sha256"})));
      for (const r of revisions) {
        table.append(el("tr", {}, el("td", {text: r.revision}), el("td", {text: r.source}),
                        el("td", {text: r.created}), el("td", {text: short(r.text_sha256), title: r.text_sha256})));
      }
      body.append(table);
    }
    const errors = Object.entries(m.renderers || {}).filter(([, r]) => r && r.error);
    for (const [name, r] of errors) body.append(el("p", {className: "invalid", text: `${name} failed: ${r.error}`}));
    if (m.reproduce) body.append(el("code", {className: "reproduce", text: m.reproduce}));
    return body;
  }

  function card(art, fresh) {
    const article = $("#artwork-template").content.firstElementChild.cloneNode(true);
    article.dataset.id = art.id;
    article.dataset.created = art.created || "";
    if (fresh) article.classList.add("fresh");
    const poem = buildPoem(art);
    article.querySelector(".poem").replaceWith(poem);
    const files = new Set(art.files || []);
    const sketch = article.querySelector(".sketch");
    if (files.has("imageprompt/sketch.png")) {
      sketch.src = fileUrl(art, "imageprompt/sketch.png");
      sketch.alt = `sketch for ${titleOf(art)}`;
      sketch.hidden = false;
    }
    const audio = article.querySelector(".melody");
    if (files.has("midi/melody.wav")) {
      audio.src = fileUrl(art, "midi/melody.wav");
      audio.hidden = false;
    }
    article.querySelector(".downloads").replaceWith(downloads(art));
    const details = article.querySelector(".provenance");
    details.addEventListener("toggle", async () => {
      if (!details.open || details.dataset.loaded) return;
      details.dataset.loaded = "1";
      try {
        const response = await fetch(art.url || `/v1/artworks/${encodeURIComponent(art.id)}`);
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        details.querySelector(".provenance-body").replaceWith(provenance(await response.json()));
      } catch (error) {
        details.querySelector(".provenance-body").replaceWith(
          el("div", {className: "provenance-body invalid", text: `cannot load the manifest: ${error.message}`}));
        delete details.dataset.loaded;
      }
    });
    return article;
  }

  function matches(art) {
    if (!query) return true;
    const q = query.toLowerCase();
    return [art.text, art.theme, art.title].some((v) => String(v || "").toLowerCase().includes(q));
  }

  function arrange() {
    const main = $("#artworks");
    main.querySelectorAll(".featured").forEach((a) => a.classList.remove("featured"));
    if (main.firstElementChild) main.firstElementChild.classList.add("featured");
    while (main.children.length > MAX_CARDS) {
      const last = main.lastElementChild;
      cards.delete(last.dataset.id);
      last.remove();
    }
    $("#empty").hidden = main.children.length > 0;
    requestAnimationFrame(() => main.querySelectorAll(".poem.vertical").forEach(fit));
  }

  function show(art, {fresh = false, append = false} = {}) {
    if (!art || !art.id || !matches(art)) return;
    const main = $("#artworks");
    const next = card(art, fresh);
    const existing = cards.get(art.id);
    if (existing) existing.replaceWith(next);
    else if (append) main.append(next);
    else {
      // Newest first: before the first card created earlier than this one.
      const later = [...main.children].find((c) => (c.dataset.created || "") <= (art.created || ""));
      main.insertBefore(next, later || null);
    }
    cards.set(art.id, next);
    arrange();
  }

  async function load() {
    const params = new URLSearchParams({limit: "24"});
    if (query) params.set("q", query);
    const response = await fetch(`/v1/artworks?${params}`);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const list = await response.json();
    $("#artworks").replaceChildren();
    cards.clear();
    for (const art of list.data || []) show(art, {append: true});
    arrange();
    document.body.dataset.ready = "1";
  }

  function setLive(state, text) {
    $("#live").dataset.state = state;
    $("#live-text").textContent = text;
  }

  function onJob(job) {
    const line = $("#job");
    const intent = job.intent || {};
    const what = [intent.form, intent.theme].filter(Boolean).join(" · ") || "an artwork";
    if (job.status === "queued" || job.status === "running") {
      line.textContent = job.status === "running" ? `composing ${what}…` : `queued: ${what}`;
      line.hidden = false;
    } else if (job.status === "failed" || job.status === "abandoned") {
      line.textContent = `${what}: ${job.status}${job.error ? ` (${job.error})` : ""}`;
      line.hidden = false;
    } else line.hidden = true;
  }

  function listen() {
    if (!window.EventSource) {
      setLive("error", "no live updates in this browser");
      return;
    }
    const events = new EventSource("/v1/events");
    let lost = false;
    events.addEventListener("open", () => {
      setLive("live", "live");
      document.body.dataset.live = "1";
      // Back after a lost connection (a server restart forgets old event ids): list afresh.
      if (lost) load().catch(fail);
      lost = false;
    });
    events.addEventListener("error", () => {
      setLive("error", "reconnecting…");
      document.body.dataset.live = "";
      lost = true;
    });
    events.addEventListener("artwork_created", (event) => {
      try { show(JSON.parse(event.data), {fresh: true}); } catch (error) { console.error(error); }
    });
    events.addEventListener("job", (event) => {
      try { onJob(JSON.parse(event.data)); } catch (error) { console.error(error); }
    });
  }

  function start() {
    let timer = null;
    $("#search").addEventListener("submit", (event) => { event.preventDefault(); });
    $("#q").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { query = $("#q").value.trim(); load().catch(fail); }, 250);
    });
    load().catch(fail);
    listen();
    if (document.fonts && document.fonts.ready) {
      document.fonts.ready.then(() => document.querySelectorAll(".poem.vertical").forEach(fit));
    }
  }

  function fail(error) {
    setLive("error", `cannot list the artworks: ${error.message}`);
    document.body.dataset.ready = "error";
  }

  start();
})();
