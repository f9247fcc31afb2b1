// CQTML labelling page: two light shows on one clip, drawn frame-exact to the audio's time.
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const $ = (id) => document.getElementById(id);
  const audio = $("audio");
  const state = { info: null, labeller: null, pair: null, covered: null, busy: false,
    shownAt: 0, lastFrame: -1, cqtImage: null, answers: 0 };
  window.cqtml = state; // for tests and curious people

  async function api(path, body) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers["X-CQTML-Token"] = token;
    const opts = body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) };
    const r = await fetch(path, opts);
    const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
    return data;
  }

  function status(msg, isError) {
    const el = $("status");
    el.textContent = msg || "";
    el.className = isError ? "error" : "";
  }

  function showProgress(p) {
    let s = `${p.labelled} labelled`;
    if (p.agreement !== null && p.agreement_n >= 5) {
      s += ` · the current reward model agrees with you on ${Math.round(100 * p.agreement)}% (${p.agreement_n})`;
    }
    $("progress").textContent = s;
    $("btn-undo").disabled = !p.can_undo;
  }

  function decodeCqt(c) {
    const bin = atob(c.data);
    const img = new ImageData(c.frames, c.bins);
    for (let f = 0; f < c.bins; f++) {
      for (let t = 0; t < c.frames; t++) {
        const v = bin.charCodeAt(f * c.frames + t);
        const o = ((c.bins - 1 - f) * c.frames + t) * 4; // low notes at the bottom
        img.data[o] = v * 0.35; img.data[o + 1] = v * 0.55; img.data[o + 2] = v * 0.7; img.data[o + 3] = 255;
      }
    }
    const cv = document.createElement("canvas");
    cv.width = c.frames; cv.height = c.bins;
    cv.getContext("2d").putImageData(img, 0, 0);
    return cv;
  }

  function setPair(pair) {
    state.pair = pair;
    state.covered = new Uint8Array(pair.num_frames);
    state.shownAt = performance.now();
    state.lastFrame = -1;
    state.cqtImage = decodeCqt(pair.cqt);
    let src = `${pair.audio_url}?labeller=${encodeURIComponent(state.labeller)}`;
    if (token) src += `&token=${encodeURIComponent(token)}`;
    audio.src = src;
    audio.load();
    $("btn-play").textContent = "▶ play";
    showProgress(pair.progress);
    draw();
  }

  function frameNow() {
    const p = state.pair;
    return Math.min(p.num_frames - 1, Math.max(0, Math.floor(audio.currentTime * p.frame_rate)));
  }

  function drawShow(canvas, acts, frame) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, D = acts.length, T = acts[0].length;
    ctx.fillStyle = "#0b0c0e";
    ctx.fillRect(0, 0, W, H);
    const lampH = 150, r = Math.min(52, W / (2.6 * D));
    for (let d = 0; d < D; d++) {
      const v = acts[d][frame];
      const x = (d + 0.5) * W / D, y = lampH / 2 + 4;
      const col = state.info.colours[d];
      const g = ctx.createRadialGradient(x, y, 2, x, y, r * 1.5);
      g.addColorStop(0, col); g.addColorStop(1, "rgba(0,0,0,0)");
      ctx.globalAlpha = v;
      ctx.fillStyle = g;
      ctx.beginPath(); ctx.arc(x, y, r * 1.5, 0, 2 * Math.PI); ctx.fill();
      ctx.globalAlpha = 0.12 + 0.88 * v;
      ctx.fillStyle = col;
      ctx.beginPath(); ctx.arc(x, y, r * 0.7, 0, 2 * Math.PI); ctx.fill();
      ctx.globalAlpha = 1;
      ctx.strokeStyle = "#444"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.arc(x, y, r * 0.7, 0, 2 * Math.PI); ctx.stroke();
    }
    // the CQT strip with each device's activation over the whole clip, and the playhead
    const top = lampH + 10, h = H - top - 4;
    if (state.cqtImage) {
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(state.cqtImage, 0, top, W, h);
    }
    for (let d = 0; d < D; d++) {
      ctx.strokeStyle = state.info.colours[d];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      const lane = h / D, base = top + (D - d) * lane; // lowest band at the bottom
      for (let t = 0; t < T; t++) {
        const x = t * W / (T - 1), y = base - acts[d][t] * (lane - 3);
        if (t === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      }
      ctx.stroke();
    }
    const px = frame * W / (T - 1);
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, top + h); ctx.stroke();
  }

  function draw() {
    const p = state.pair;
    if (!p) return;
    const f = frameNow();
    drawShow($("show-a"), p.a, f);
    drawShow($("show-b"), p.b, f);
    $("time").textContent = `${audio.currentTime.toFixed(2)} s`;
    if (!audio.seeking && document.activeElement !== $("scrub")) {
      $("scrub").value = String(Math.round(1000 * audio.currentTime / p.duration));
    }
  }

  function tick() {
    const p = state.pair;
    if (p && !audio.paused) {
      const f = frameNow();
      // frames heard while playing (jumps from scrubbing do not count as watched)
      const from = state.lastFrame >= 0 && f >= state.lastFrame && f - state.lastFrame < 10 ? state.lastFrame : f;
      for (let t = from; t <= f; t++) state.covered[t] = 1;
      state.lastFrame = f;
    } else {
      state.lastFrame = -1;
    }
    draw();
    requestAnimationFrame(tick);
  }

  function playedFraction() {
    if (!state.covered) return 0;
    let n = 0;
    for (const v of state.covered) n += v;
    return n / state.covered.length;
  }

  function togglePlay() {
    if (!state.pair) return;
    if (audio.paused) {
      if (audio.ended) audio.currentTime = 0;
      audio.play().catch((e) => status(`cannot play: ${e.message}`, true));
    } else {
      audio.pause();
    }
  }

  async function answer(choice) {
    if (!state.pair || state.busy) return;
    state.busy = true;
    audio.pause();
    try {
      const r = await api("api/answer", {
        labeller: state.labeller, pair_id: state.pair.pair_id, choice,
        played_fraction: Math.min(1, playedFraction()),
        seconds: (performance.now() - state.shownAt) / 1000,
      });
      state.answers += 1;
      status(`saved (${choice})`);
      setPair(r.next);
    } catch (e) {
      status(`not saved: ${e.message}`, true);
    } finally {
      state.busy = false;
    }
  }

  async function undo() {
    if (state.busy) return;
    state.busy = true;
    audio.pause();
    try {
      const r = await api("api/undo", { labeller: state.labeller });
      status("undone: answer this pair again");
      setPair(r.next);
    } catch (e) {
      status(`cannot undo: ${e.message}`, true);
    } finally {
      state.busy = false;
    }
  }

  async function start(name) {
    state.labeller = name;
    localStorage.setItem("cqtml-labeller", name);
    $("login").hidden = true;
    $("main").hidden = false;
    const body = { labeller: name };
    if (params.get("selection")) body.selection = params.get("selection");
    try {
      setPair(await api("api/next", body));
      status(`labelling as ${name}`);
    } catch (e) {
      status(e.message, true);
    }
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.target instanceof HTMLInputElement && ev.target.type !== "range") return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || !state.pair) return;
    const k = ev.key.toLowerCase();
    const map = { a: "a", 1: "a", b: "b", 2: "b", t: "tie", "=": "tie", s: "skip" };
    if (k === " ") { ev.preventDefault(); togglePlay(); }
    else if (k in map) { ev.preventDefault(); answer(map[k]); }
    else if (k === "u" || k === "backspace") { ev.preventDefault(); undo(); }
  });
  $("btn-a").onclick = () => answer("a");
  $("btn-b").onclick = () => answer("b");
  $("btn-tie").onclick = () => answer("tie");
  $("btn-skip").onclick = () => answer("skip");
  $("btn-undo").onclick = () => undo();
  $("btn-play").onclick = () => togglePlay();
  audio.onplay = () => { $("btn-play").textContent = "❚❚ pause"; };
  audio.onpause = () => { $("btn-play").textContent = "▶ play"; };
  $("scrub").oninput = (ev) => {
    if (state.pair) audio.currentTime = (Number(ev.target.value) / 1000) * state.pair.duration;
  };
  $("login-form").onsubmit = (ev) => { ev.preventDefault(); start($("name").value.trim()); };

  api("api/info").then((info) => {
    state.info = info;
    const name = params.get("labeller") || localStorage.getItem("cqtml-labeller");
    if (name) start(name);
    else { $("login").hidden = false; $("progress").textContent = ""; $("name").focus(); }
    requestAnimationFrame(tick);
  }).catch((e) => status(e.message, true));
})();
