// The dashboard's charts: per-rank series from the API's downsampled buckets, uPlot charts with
// alert episodes drawn as bands and NaN/Inf marked where they happened. Loaded before app.js,
// whose views call makeChart and rankData.
"use strict";

const SEVERITY_COLOR = { critical: "rgba(198,40,40,0.16)", warning: "rgba(239,143,0,0.18)", info: "rgba(92,107,192,0.12)" };
// One colour per rank, the same in every chart (and in its legend). Red is left to the alert bands,
// grey to ref_loss, magenta to the NaN/Inf marks.
const RANK_COLORS = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#827717", "#4e342e", "#3949ab", "#558b2f", "#00695c"];
const REF_LOSS_COLOR = "#757575";
const NONFINITE_COLOR = "#d81b60";

function rankColor(i) {
  return i < RANK_COLORS.length ? RANK_COLORS[i] : `hsl(${Math.round((i * 137.508) % 360)}, 65%, 38%)`;
}

// The downsampled series of one rank as uPlot columns. Buckets keep min and max; the charts draw
// the max (spikes survive any zoom) and, for the loss, the min as well. NaN and infinite values
// cannot be drawn as points: they leave a gap, and nonFinite() marks them.
function columns(rank) {
  const nullIfNan = (values) => values.map((v) => (typeof v === "number" ? v : null));
  const positive = (values) => values.map((v) => (typeof v === "number" && v > 0 ? v : null));
  const lr = rank.lr || { min: rank.step.map(() => null), max: rank.step.map(() => null), nan: rank.step.map(() => 0) };
  return {
    step: rank.step,
    loss_max: nullIfNan(rank.loss.max), loss_min: nullIfNan(rank.loss.min),
    ref_loss: nullIfNan(rank.ref_loss.max),
    grad_norm: positive(rank.grad_norm.max),
    tokens: nullIfNan(rank.tokens.max),
    lr: positive(lr.max),
    nonFinite: {
      loss: nonFinite(rank.step, [rank.loss, rank.ref_loss]),
      grad: nonFinite(rank.step, [rank.grad_norm]),
      lr: nonFinite(rank.step, [lr]),
    },
  };
}

// The buckets of a chart's series that hold NaN or an infinity, as { step, what } ("NaN", "+Inf",
// "-Inf", or several joined), so that they are marked where they happened instead of only a gap.
function nonFinite(steps, seriesList) {
  const out = [];
  steps.forEach((step, i) => {
    const what = new Set();
    for (const series of seriesList) {
      if (series.nan && series.nan[i] > 0) what.add("NaN");
      if (series.max[i] === "Infinity" || series.min[i] === "Infinity") what.add("+Inf");
      if (series.min[i] === "-Infinity" || series.max[i] === "-Infinity") what.add("-Inf");
    }
    if (what.size) out.push({ step, what: [...what].join(" ") });
  });
  return out;
}

// A uPlot plugin marking NaN/Inf buckets: a dashed line through the plot and a triangle on top,
// with what was found beside the first of a run of marks.
function nonFiniteMarks(getMarks) {
  return {
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx, top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
        const px = devicePixelRatio, size = 5 * px;
        let lastLabelled = -Infinity;
        ctx.save();
        for (const mark of getMarks()) {
          const x = u.valToPos(mark.step, "x", true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
          ctx.strokeStyle = NONFINITE_COLOR;
          ctx.fillStyle = NONFINITE_COLOR;
          ctx.lineWidth = px;
          ctx.setLineDash([3 * px, 3 * px]);
          ctx.beginPath(); ctx.moveTo(x, top + size); ctx.lineTo(x, bottom); ctx.stroke();
          ctx.setLineDash([]);
          ctx.beginPath(); ctx.moveTo(x - size, top); ctx.lineTo(x + size, top); ctx.lineTo(x, top + 1.6 * size); ctx.closePath(); ctx.fill();
          if (x - lastLabelled > 60 * px) {
            ctx.font = `${11 * px}px system-ui, sans-serif`;
            ctx.fillText(mark.what, x + size + 2 * px, top + 1.6 * size);
            lastLabelled = x;
          }
          window.lossguardDashboard.nonFiniteDrawn++;  // the chart is destroyed with its view
        }
        ctx.restore();
      }],
    },
  };
}

// A uPlot plugin drawing alert episodes as bands (single-step episodes as lines).
function alertBands(getAlerts) {
  return {
    hooks: {
      drawClear: [(u) => {
        const ctx = u.ctx;
        for (const alert of getAlerts()) {
          const x0 = u.valToPos(alert.first_step, "x", true), x1 = u.valToPos(alert.last_step, "x", true);
          const left = Math.max(u.bbox.left, Math.min(x0, x1)), right = Math.min(u.bbox.left + u.bbox.width, Math.max(x0, x1));
          if (right < u.bbox.left || left > u.bbox.left + u.bbox.width) continue;
          ctx.fillStyle = SEVERITY_COLOR[alert.severity] || SEVERITY_COLOR.info;
          ctx.fillRect(left, u.bbox.top, Math.max(right - left, 2 * devicePixelRatio), u.bbox.height);
          window.lossguardDashboard.bandsDrawn++;  // the chart is destroyed with its view
        }
      }],
    },
  };
}

// `series`: labels, or uPlot series options ({ label, stroke, width, dash }). `nonFinite`: the NaN/Inf
// buckets to mark.
function makeChart(view, target, title, series, data, { log = false, alerts = () => [], nonFinite = () => [] } = {}) {
  const box = el("div", { class: "chart" }, el("h2", {}, title));
  target.append(box);
  const width = Math.max(400, target.clientWidth - 12);
  const options = {
    width, height: 210,
    cursor: { sync: { key: "lossguard" } },
    scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
    axes: [{ label: "step" }, { size: 60 }],
    series: [{ label: "step" }, ...series.map((s, i) => ({ stroke: rankColor(i), width: 1.5, spanGaps: false, ...(typeof s === "string" ? { label: s } : s) }))],
    plugins: [alertBands(alerts), nonFiniteMarks(nonFinite)],
  };
  const chart = new uPlot(options, data, box);
  view.state.charts.push(chart);
  return chart;
}

// The ranks a rank_divergence alert of warning or critical severity names (info notes of uneven
// load do not mark a rank).
function divergingRanks(alerts) {
  const out = new Set();
  for (const alert of alerts) {
    if (alert.kind !== "rank_divergence" || alert.severity === "info") continue;
    for (const rank of (alert.evidence && alert.evidence.ranks) || []) out.add(rank);
  }
  return out;
}

// A diverging rank keeps its colour (two diverging ranks stay apart) and is drawn heavier and dashed.
const DIVERGING = { width: 3, dash: [8, 4] };

// Every rank's series on one step axis, each rank in its own colour in every chart: the loss chart
// keeps rank 0's loss max, min (lighter, dashed) and ref_loss (grey, dashed) first, then every
// other rank's loss max; grad_norm, tokens and lr one series per rank. Each chart's NaN/Inf marks
// come from every rank.
function rankData(ranks, diverging) {
  const cols = ranks.map(columns);
  const several = ranks.length > 1;
  const style = (rank, i, what) => ({
    label: several ? `rank ${rank.rank}${diverging.has(rank.rank) ? " (diverging)" : ""} ${what}` : what,
    stroke: rankColor(i), ...(diverging.has(rank.rank) ? DIVERGING : {}),
  });
  const first = cols[0];
  const loss = [[first.step, first.loss_max, first.loss_min, first.ref_loss]];
  const prefix = several ? `rank ${ranks[0].rank} ` : "";
  const lossSeries = [style(ranks[0], 0, "loss max"),
    { label: `${prefix}loss min`, stroke: rankColor(0), width: 1, dash: [4, 3] },
    { label: `${prefix}ref_loss`, stroke: REF_LOSS_COLOR, width: 1.5, dash: [10, 4] }];
  ranks.slice(1).forEach((rank, i) => { loss.push([cols[i + 1].step, cols[i + 1].loss_max]); lossSeries.push(style(rank, i + 1, "loss max")); });
  const perRank = (key, what) => ({
    data: uPlot.join(cols.map((c) => [c.step, c[key]])),
    series: ranks.map((rank, i) => style(rank, i, what)),
  });
  const marks = (key) => cols.flatMap((c) => c.nonFinite[key]).sort((a, b) => a.step - b.step);
  return {
    loss: { data: loss.length === 1 ? loss[0] : uPlot.join(loss), series: lossSeries, nonFinite: marks("loss") },
    grad: { ...perRank("grad_norm", "grad_norm"), nonFinite: marks("grad") },
    tokens: { ...perRank("tokens", "tokens"), nonFinite: [] },
    lr: { ...perRank("lr", "lr"), nonFinite: marks("lr"), sent: cols.some((c) => c.lr.some((v) => v !== null)) || marks("lr").length > 0 },
  };
}
