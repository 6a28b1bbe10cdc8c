// Tiny canvas charts for the bench page: time-series lines and grouped bars. No dependencies.
'use strict';
(function (global) {
  const PALETTE = ['#c2410c', '#1d4ed8', '#15803d', '#7e22ce', '#b45309', '#0e7490', '#be123c', '#4d7c0f'];
  // Text follows the page's root font size (bigger on a kiosk screen).
  const fontPx = () => Math.round(0.72 * parseFloat(getComputedStyle(document.documentElement).fontSize || '16'));
  const charts = new Map();   // canvas → last spec, redrawn on resize

  // A "nice" axis maximum and step (1, 2, 2.5 or 5 × 10^k) for about `n` ticks.
  function niceScale(max, n) {
    if (!(max > 0)) max = 1;
    const raw = max / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    return { max: Math.ceil(max / step) * step, step };
  }
  function fmt(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return +(v / 1e6).toFixed(1) + 'M';
    if (a >= 1e4) return +(v / 1e3).toFixed(1) + 'k';
    return a >= 100 || v === 0 ? String(Math.round(v)) : String(+v.toPrecision(3));
  }

  // Sizes the backing store to the CSS box × devicePixelRatio; returns [ctx, width, height].
  function setup(canvas) {
    const r = canvas.getBoundingClientRect(), dpr = global.devicePixelRatio || 1;
    const w = Math.max(200, Math.round(r.width)), hgt = Math.max(120, Math.round(r.height));
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(hgt * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const fs = fontPx();
    ctx.font = `${fs}px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif`; ctx.textBaseline = 'middle';
    ctx.fs = fs;
    return [ctx, w, hgt];
  }

  // Legend on top, y grid with labels on the left; returns the plot box {x, y, w, h, max}.
  function frame(ctx, w, hgt, series, maxValue) {
    const fs = ctx.fs, row = Math.round(fs * 1.5);
    let lx = 4, ly = row / 2;
    series.forEach((s, i) => {
      const color = s.color || PALETTE[i % PALETTE.length];
      const text = s.label + (s.last !== undefined ? ' ' + s.last : '');
      const tw = ctx.measureText(text).width;
      if (lx > 4 && lx + tw + fs * 2 > w) { lx = 4; ly += row; }   // wrap the legend
      ctx.fillStyle = color; ctx.fillRect(lx, ly - fs * 0.4, fs, fs * 0.8);
      ctx.fillStyle = '#15151a'; ctx.textAlign = 'left'; ctx.fillText(text, lx + fs * 1.3, ly);
      lx += tw + fs * 2.6;
    });
    const { max, step } = niceScale(maxValue, 4);
    let widest = 0;   // the widest tick label sets the left margin ("0.75" is wider than "1")
    for (let v = 0; v <= max + step / 2; v += step) widest = Math.max(widest, ctx.measureText(fmt(v)).width);
    const left = Math.ceil(widest + fs);
    const top = ly + row * 0.8;
    const box = { x: left, y: top, w: w - left - fs * 0.8, h: hgt - top - row * 1.2, max };
    ctx.textAlign = 'right';
    for (let v = 0; v <= max + step / 2; v += step) {
      const y = box.y + box.h - (v / max) * box.h;
      ctx.strokeStyle = v === 0 ? '#8a8d94' : '#e4e2dc'; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(box.x, Math.round(y) + 0.5); ctx.lineTo(box.x + box.w, Math.round(y) + 0.5); ctx.stroke();
      ctx.fillStyle = '#4d5058'; ctx.fillText(fmt(v), box.x - fs * 0.4, y);
    }
    return box;
  }

  function drawLine(canvas, spec) {
    const [ctx, w, hgt] = setup(canvas);
    const n = spec.points || 60;
    const all = spec.series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)));
    const box = frame(ctx, w, hgt, spec.series, Math.max(...all, 0));
    const xAt = (i, len) => box.x + box.w - ((len - 1 - i) / (n - 1)) * box.w;
    ctx.fillStyle = '#4d5058';
    // The x labels: seconds before now, or what the spec says (a run's seconds since its start).
    const xLabel = spec.xLabel || ((s) => (s === n - 1 ? 'now' : '−' + (n - 1 - s) + ' s'));
    [[0, 'left'], [Math.round(n / 2), 'center'], [n - 1, 'right']].forEach(([s, align]) => {
      ctx.textAlign = align;
      ctx.fillText(xLabel(s, n), xAt(s, n), hgt - ctx.fs * 0.8);
    });
    spec.series.forEach((s, si) => {
      ctx.strokeStyle = s.color || PALETTE[si % PALETTE.length]; ctx.lineWidth = 2; ctx.lineJoin = 'round';
      ctx.beginPath();
      let pen = false;
      const vals = s.values.slice(-n), dots = [];
      vals.forEach((v, i) => {
        if (!Number.isFinite(v)) { pen = false; return; }
        const x = xAt(i, vals.length), y = box.y + box.h - (v / box.max) * box.h;
        if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        if (!Number.isFinite(vals[i - 1]) && !Number.isFinite(vals[i + 1])) dots.push([x, y]);   // a lone point
        pen = true;
      });
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      for (const [x, y] of dots) { ctx.beginPath(); ctx.arc(x, y, 2.5, 0, 2 * Math.PI); ctx.fill(); }
    });
  }

  function drawBars(canvas, spec) {
    const [ctx, w, hgt] = setup(canvas);
    const groups = spec.groups, series = spec.series;
    const all = series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)));
    const box = frame(ctx, w, hgt, series, Math.max(...all, 0));
    if (!groups.length || !series.length) {
      ctx.fillStyle = '#4d5058'; ctx.textAlign = 'center'; ctx.fillText(spec.empty || 'No data', box.x + box.w / 2, box.y + box.h / 2);
      return;
    }
    const gw = box.w / groups.length, bw = Math.max(2, Math.min(ctx.fs * 3.5, (gw * 0.8) / series.length));
    groups.forEach((g, gi) => {
      const x0 = box.x + gi * gw + (gw - bw * series.length) / 2;
      series.forEach((s, si) => {
        const v = s.values[gi];
        if (!Number.isFinite(v)) return;
        const bh = (v / box.max) * box.h;
        ctx.fillStyle = s.color || PALETTE[si % PALETTE.length];
        ctx.fillRect(x0 + si * bw + 1, box.y + box.h - bh, bw - 2, bh);
        if (ctx.measureText(fmt(v)).width < bw) { ctx.fillStyle = '#15151a'; ctx.textAlign = 'center'; ctx.fillText(fmt(v), x0 + si * bw + bw / 2, box.y + box.h - bh - ctx.fs * 0.7); }
      });
      ctx.fillStyle = '#15151a'; ctx.textAlign = 'center';
      ctx.fillText(String(g), box.x + gi * gw + gw / 2, hgt - ctx.fs * 0.8);
    });
  }

  function draw(canvas, kind, spec) {
    charts.set(canvas, [kind, spec]);
    (kind === 'bars' ? drawBars : drawLine)(canvas, spec);
  }
  let pending = 0;
  global.addEventListener('resize', () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => charts.forEach(([kind, spec], c) => draw(c, kind, spec)));
  });

  global.TFChart = {
    PALETTE, fmt,
    line: (canvas, spec) => draw(canvas, 'line', spec),
    bars: (canvas, spec) => draw(canvas, 'bars', spec),
  };
})(window);
