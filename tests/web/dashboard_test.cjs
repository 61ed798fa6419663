// The built-in dashboard in a real browser: Debian's Chromium driven by playwright-core, against
// the real lossguard-server with real runs (the scenario corpus) replayed into it.
//   node tests/web/dashboard_test.cjs SERVER_BINARY CLI_BINARY WEB_ROOT SOURCE_DIR OUT_DIR
// (ctest: web_dashboard; NODE_PATH points at the build's node_modules). Screenshots go to OUT_DIR.
"use strict";
const { chromium } = require("playwright-core");
const { spawn, execFileSync } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const assert = require("assert/strict");

const [serverBinary, cliBinary, webRoot, sourceDir, outDir] = process.argv.slice(2);
const scenarios = path.join(sourceDir, "tests/scenarios");

function startServer(db, extraArgs = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(serverBinary, ["--listen", "127.0.0.1:0", "--db", db, "--web-root", webRoot, ...extraArgs],
                        { stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    const timer = setTimeout(() => reject(new Error("server did not start: " + err)), 20000);
    child.stderr.on("data", (d) => { err += d; });
    child.stdout.on("data", (d) => {
      out += d;
      const match = out.match(/listening on (http:\/\/\S+)/);
      if (match) { clearTimeout(timer); resolve({ child, url: match[1] }); }
    });
    child.on("exit", (code) => reject(new Error(`server exited ${code}: ${err}`)));
  });
}

function replay(url, file) {
  execFileSync(cliBinary, ["replay", path.join(scenarios, file), "--server", url], { stdio: "pipe" });
}

async function post(url, records) {
  const response = await fetch(url + "/api/v1/steps", {
    method: "POST", headers: { "Content-Type": "application/x-ndjson" },
    body: records.map((r) => JSON.stringify(r)).join("\n") + "\n",
  });
  assert.equal(response.status, 200, await response.text());
}

// For every chart on the page: each legend entry's colour, and whether the line drawn for that
// series has that colour where it is not covered. A series' points are sampled on the canvas (a 7x7
// pixel box around each, where a later-drawn series or a NaN/Inf mark is not within 8 px).
function legendAgainstCanvas() {
  const parse = (css) => {
    const [r, g, b, a = 1] = css.match(/[\d.]+/g).map(Number);
    return [r, g, b].map((c) => Math.round(c * a + 255 * (1 - a)));  // over the white chart background
  };
  return window.lossguardDashboard.charts.map((u) => {
    const rows = [...u.root.querySelectorAll(".u-legend .u-series")].slice(1);
    const canvas = u.ctx.getImageData(0, 0, u.ctx.canvas.width, u.ctx.canvas.height);
    const marks = (window.lossguardDashboard.nonFinite ? Object.values(window.lossguardDashboard.nonFinite).flat() : [])
      .map((m) => u.valToPos(m.step, "x", true));
    return rows.map((row, i) => {
      const s = i + 1;
      const color = parse(getComputedStyle(row.querySelector(".u-marker")).borderColor);
      let checked = 0, matched = 0;
      const n = u.data[0].length;
      for (let k = 0; k < n; k += Math.max(1, Math.floor(n / 40))) {
        const value = u.data[s][k];
        if (value === null || value === undefined) continue;
        const x = Math.round(u.valToPos(u.data[0][k], "x", true)), y = Math.round(u.valToPos(value, u.series[s].scale, true));
        if (x < u.bbox.left + 8 || x > u.bbox.left + u.bbox.width - 8 || y < u.bbox.top + 8 || y > u.bbox.top + u.bbox.height - 8) continue;
        const covered = u.data.slice(s + 1).some((later, j) => later[k] !== null && later[k] !== undefined &&
          Math.abs(u.valToPos(later[k], u.series[s + 1 + j].scale, true) - y) < 8);
        if (covered || marks.some((mx) => Math.abs(mx - x) < 8)) continue;
        checked++;
        let found = false;
        for (let dx = -3; dx <= 3 && !found; dx++) {
          for (let dy = -3; dy <= 3 && !found; dy++) {
            const at = ((y + dy) * canvas.width + (x + dx)) * 4;
            found = [0, 1, 2].every((c) => Math.abs(canvas.data[at + c] - color[c]) <= 40);
          }
        }
        if (found) matched++;
      }
      return { label: u.series[s].label, color: `rgb(${color.join(",")})`, checked, matched };
    });
  });
}

// Each drawn series' legend colour is its line's; at least `minChecked` series of every chart
// could be checked.
function assertLegendsMatchLines(charts, what, minChecked = 1) {
  charts.forEach((series, c) => {
    const checkable = series.filter((s) => s.checked >= 5);
    assert.ok(checkable.length >= minChecked, `${what} chart ${c}: too few series could be checked: ${JSON.stringify(series)}`);
    for (const s of checkable) {
      assert.ok(s.matched / s.checked >= 0.6, `${what} chart ${c}: "${s.label}" is drawn in another colour than its legend's ${s.color}: ${JSON.stringify(s)}`);
    }
  });
}

async function main() {
  fs.mkdirSync(outDir, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lossguard-web-"));
  const { child, url } = await startServer(path.join(dir, "db"));
  const browser = await chromium.launch({
    executablePath: process.env.LOSSGUARD_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const pageErrors = [];
  try {
    replay(url, "healthy-mb8-ga1.ndjson");
    replay(url, "healthy-mb1-ga8.ndjson");
    replay(url, "bug-ga-change.ndjson");
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
    const ready = () => page.waitForFunction(() => window.lossguardDashboard && window.lossguardDashboard.ready && window.lossguardDashboard.hash === location.hash, null, { timeout: 15000 });

    // The run list: every run, with its open alerts by severity.
    await page.goto(url + "/");
    await ready();
    const rows = await page.$$eval("tr[data-run]", (trs) => trs.map((tr) => [tr.dataset.run, tr.querySelector(".badge").textContent, tr.querySelector(".badge").className]));
    assert.deepEqual(rows.map((r) => r[0]), ["bug-ga-change", "healthy-mb1-ga8", "healthy-mb8-ga1"]);
    assert.deepEqual(rows[0].slice(1), ["1", "badge critical"], "the GA bug run shows one critical alert");
    assert.deepEqual(rows[1].slice(1), ["ok", "badge ok"]);
    await page.screenshot({ path: path.join(outDir, "runs.png"), fullPage: true });

    // The run page: four charts with data, the alert listed with its message and drawn as a band.
    await page.click("a[href='#/run/bug-ga-change']");
    await ready();
    const state = await page.evaluate(() => ({
      charts: window.lossguardDashboard.charts.map((c) => ({ series: c.series.length, points: c.data[0].length, loss: c.data[1].filter((v) => v !== null).length })),
      bands: window.lossguardDashboard.bandsDrawn,
      canvases: document.querySelectorAll(".chart canvas").length,
    }));
    assert.equal(state.charts.length, 4);
    assert.equal(state.canvases, 4);
    for (const chart of state.charts) {
      assert.equal(chart.points, 150, "150 steps, one bucket each");
      assert.ok(chart.loss > 140, `series drawn with data: ${JSON.stringify(chart)}`);
    }
    assertLegendsMatchLines(await page.evaluate(legendAgainstCanvas), "bug-ga-change");
    assert.ok(state.bands > 0, "alert episodes are drawn on the charts");
    const alerts = await page.$$eval(".alert", (items) => items.map((a) => [a.dataset.kind, a.querySelector(".message").textContent]));
    const kinds = alerts.map((a) => a[0]).sort();
    assert.deepEqual(kinds, ["config_change", "loss_scale_mismatch"]);
    assert.match(alerts.find((a) => a[0] === "loss_scale_mismatch")[1], /summed over ga_steps=8 without dividing/);
    await page.screenshot({ path: path.join(outDir, "run.png"), fullPage: true });
    // Clicking an alert zooms every chart to its episode (the charts are synchronized).
    await page.click(".alert[data-kind='config_change']");
    const scales = await page.evaluate(() => window.lossguardDashboard.charts.map((c) => [c.scales.x.min, c.scales.x.max]));
    for (const [min, max] of scales) assert.ok(min >= 50 && max <= 100, `zoomed to the change at 75: ${min}-${max}`);

    // Comparison: mb8/GA1 against mb1/GA8 on one chart.
    await page.goto(url + "/#/compare/healthy-mb8-ga1/healthy-mb1-ga8");
    await ready();
    const compared = await page.evaluate(() => window.lossguardDashboard.charts[0].data.map((s) => s.filter((v) => v !== null).length));
    assert.deepEqual(compared, [150, 150, 150]);
    await page.screenshot({ path: path.join(outDir, "compare.png"), fullPage: true });

    // Leaving a view while it still loads: its late answers draw nothing into the next view.
    let heldSteps = 0;
    const holdSteps = async (route) => {
      heldSteps++;
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await route.continue().catch(() => {});  // cancelled by the page meanwhile: nothing to send
    };
    await page.route("**/api/v1/runs/bug-ga-change/steps*", holdSteps);
    await page.goto(url + "/#/run/bug-ga-change");
    for (let i = 0; i < 100 && heldSteps === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(heldSteps, 1, "the first view's steps request is held");
    await page.evaluate(() => { location.hash = "#/run/healthy-mb8-ga1"; });
    await ready();
    await new Promise((resolve) => setTimeout(resolve, 2000));  // the held answer is released
    const after = await page.evaluate(() => ({
      view: window.lossguardDashboard.view, charts: window.lossguardDashboard.charts.length,
      canvases: document.querySelectorAll(".chart canvas").length,
      title: document.querySelector("h1").textContent, alerts: document.querySelectorAll(".alert").length,
    }));
    assert.deepEqual([after.view, after.charts, after.canvases, after.alerts], ["run", 4, 4, 0], JSON.stringify(after));
    assert.match(after.title, /^healthy-mb8-ga1 /);
    await page.unroute("**/api/v1/runs/bug-ga-change/steps*", holdSteps);

    // A refresh slower than the refresh interval (2 s) delays the next one; they never overlap.
    let inFlight = 0, mostInFlight = 0, slowAnswers = 0;
    const slowSummary = async (route) => {
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      await route.continue().catch(() => {});
      inFlight--;
      slowAnswers++;
    };
    await page.route("**/api/v1/runs/healthy-mb8-ga1", slowSummary);
    await new Promise((resolve) => setTimeout(resolve, 8000));
    await page.unroute("**/api/v1/runs/healthy-mb8-ga1", slowSummary);
    assert.ok(slowAnswers >= 1, "the page kept refreshing");
    assert.equal(mostInFlight, 1, "refreshes overlapped");

    // Every rank of a multi-rank run, the rank that kept its local gradients marked as diverging.
    replay(url, "ws4-bug-skip-all-reduce.ndjson");
    await page.goto(url + "/#/run/ws4-bug-skip-all-reduce");
    await ready();
    const ranks = await page.evaluate(() => ({
      ranks: window.lossguardDashboard.ranks, diverging: window.lossguardDashboard.diverging,
      grad: window.lossguardDashboard.charts[1].series.slice(1).map((s) => [s.label, s.width]),
      loss: window.lossguardDashboard.charts[0].series.length,
    }));
    assert.deepEqual(ranks.ranks, [0, 1, 2, 3]);
    assert.deepEqual(ranks.diverging, [2]);
    assert.deepEqual(ranks.grad.map((g) => g[0]), ["rank 0 grad_norm", "rank 1 grad_norm", "rank 2 (diverging) grad_norm", "rank 3 grad_norm"]);
    assert.ok(ranks.grad[2][1] > ranks.grad[0][1], "the diverging rank is drawn heavier");
    assert.equal(ranks.loss, 1 + 3 + 3, "rank 0's loss max, min and ref_loss, then ranks 1-3");
    await page.screenshot({ path: path.join(outDir, "ranks.png"), fullPage: true });

    // Colours: one per rank, the same in every chart and in its legend, no two ranks alike. Ranks
    // whose lines lie apart, so that every line can be found on the canvas.
    const palette = [];
    for (let step = 0; step < 60; step++) {
      for (let rank = 0; rank < 3; rank++) {
        palette.push({ run: "palette", step, rank, world_size: 3, ga_steps: 1, micro_batch_size: 8, loss: 2 + rank + 0.05 * Math.sin(step / 5),
                       ref_loss: 1.2, grad_norm: 2 ** rank, lr: 1e-4 * 4 ** rank, tokens: 100 * (rank + 1) });
      }
    }
    await post(url, palette);
    await page.goto(url + "/#/run/palette");
    await ready();
    const colours = await page.evaluate(legendAgainstCanvas);
    // A chart's lowest line lies on the plot's edge, where it is not sampled: two of three per chart.
    assertLegendsMatchLines(colours, "palette", 2);
    for (let rank = 0; rank < 3; rank++) {
      assert.ok(colours.some((chart) => chart.some((s) => s.label.startsWith(`rank ${rank} `) && s.checked >= 5)),
                `rank ${rank}'s line was found in some chart: ${JSON.stringify(colours)}`);
    }
    const rankColour = (chart, rank) => colours[chart].find((s) => s.label.startsWith(`rank ${rank} `)).color;
    for (let rank = 0; rank < 3; rank++) {
      for (let chart = 1; chart < 4; chart++) {
        assert.equal(rankColour(chart, rank), rankColour(0, rank), `rank ${rank} has one colour in every chart`);
      }
    }
    assert.equal(new Set([0, 1, 2].map((rank) => rankColour(0, rank))).size, 3, "no two ranks alike");
    const refLoss = colours[0].find((s) => s.label.endsWith("ref_loss")).color;
    assert.ok(![0, 1, 2].map((rank) => rankColour(0, rank)).includes(refLoss), "ref_loss is not a rank's colour");

    // The learning rate: a blow-up is drawn where it happened.
    replay(url, "bug-lr-spike.ndjson");
    const spike = fs.readFileSync(path.join(scenarios, "bug-lr-spike.ndjson"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    await page.goto(url + "/#/run/bug-lr-spike");
    await ready();
    const lrChart = await page.evaluate(() => ({ title: document.querySelectorAll(".chart h2")[2].textContent, step: window.lossguardDashboard.charts[2].data[0], lr: window.lossguardDashboard.charts[2].data[1] }));
    assert.match(lrChart.title, /^learning rate/);
    assert.deepEqual(lrChart.step.filter((_, i) => lrChart.lr[i] > 0.1), spike.filter((r) => r.lr > 0.1).map((r) => r.step), "the lr spike's steps");
    assert.ok(spike.some((r) => r.lr > 0.1), "the scenario has an lr spike");
    // Its lr lies on the plot's edges (constant, then the spike): the other charts are checked.
    assertLegendsMatchLines((await page.evaluate(legendAgainstCanvas)).filter((_, chart) => chart !== 2), "bug-lr-spike");
    await page.screenshot({ path: path.join(outDir, "lr-spike.png"), fullPage: true });

    // NaN and infinite values are marked at their steps, not only left out of the line.
    replay(url, "bug-nan.ndjson");
    const nanRun = fs.readFileSync(path.join(scenarios, "bug-nan.ndjson"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    await page.goto(url + "/#/run/bug-nan");
    await ready();
    const marked = await page.evaluate(() => ({ marks: window.lossguardDashboard.nonFinite, drawn: window.lossguardDashboard.nonFiniteDrawn }));
    const nonNumber = (v) => typeof v === "string";
    assert.deepEqual(marked.marks.loss.map((m) => m.step), nanRun.filter((r) => nonNumber(r.loss) || nonNumber(r.ref_loss)).map((r) => r.step));
    assert.deepEqual(marked.marks.grad.map((m) => m.step), nanRun.filter((r) => nonNumber(r.grad_norm)).map((r) => r.step));
    assert.ok(marked.marks.loss.length > 0 && marked.marks.loss.every((m) => m.what === "NaN"), JSON.stringify(marked.marks.loss.slice(0, 3)));
    assert.ok(marked.drawn >= marked.marks.loss.length + marked.marks.grad.length, `marks drawn: ${marked.drawn}`);
    // The mark is on the canvas: its colour at the top of the plot, at the first NaN step.
    const markPixel = await page.evaluate((step) => {
      const u = window.lossguardDashboard.charts[0];
      const x = Math.round(u.valToPos(step, "x", true)), y = Math.round(u.bbox.top + 3 * devicePixelRatio);
      return [...u.ctx.getImageData(x, y, 1, 1).data.slice(0, 3)];
    }, marked.marks.loss[0].step);
    assert.ok([0xd8, 0x1b, 0x60].every((c, i) => Math.abs(markPixel[i] - c) <= 12), `the NaN mark is drawn: ${markPixel}`);
    // An infinity sent as a record's value: marked as +Inf.
    await post(url, [{ run: "inf", step: 0, ga_steps: 1, micro_batch_size: 8, loss: 3, grad_norm: 1, lr: 1e-4 },
                     { run: "inf", step: 1, ga_steps: 1, micro_batch_size: 8, loss: "Infinity", grad_norm: "Infinity", lr: "Infinity" },
                     { run: "inf", step: 2, ga_steps: 1, micro_batch_size: 8, loss: 3, grad_norm: 1, lr: 1e-4 }]);
    await page.goto(url + "/#/run/inf");
    await ready();
    assert.deepEqual(await page.evaluate(() => window.lossguardDashboard.nonFinite),
                     { loss: [{ step: 1, what: "+Inf" }], grad: [{ step: 1, what: "+Inf" }], lr: [{ step: 1, what: "+Inf" }] });
    await page.goto(url + "/#/run/bug-nan");
    await ready();
    await page.screenshot({ path: path.join(outDir, "nan.png"), fullPage: true });

    // An incident: the gradient jump a loss-scale factor causes is listed inside its cause.
    const incident = [];
    for (let step = 0; step < 130; step++) {
      const factor = step >= 100 ? 8 : 1;
      incident.push({ run: "incident", step, ga_steps: 8, micro_batch_size: 1, loss: 3 * factor, ref_loss: 3,
                      grad_norm: (1 + 0.1 * Math.sin(step * 1.7)) * factor, tokens: 400 });
    }
    await post(url, incident);
    await page.goto(url + "/#/run/incident");
    await ready();
    const nested = await page.$$eval(".alerts > .alert", (items) => items.map((a) => [a.dataset.kind, [...a.querySelectorAll(".symptoms .alert")].map((s) => s.dataset.kind)]));
    // The loss spike rides on the same factor: a symptom too. One incident, nothing beside it.
    assert.deepEqual(nested.map((n) => [n[0], n[1].sort()]), [["loss_scale_mismatch", ["grad_explosion", "loss_spike"]]], JSON.stringify(nested));
    await page.screenshot({ path: path.join(outDir, "incident.png"), fullPage: true });

    // Live: a run streaming while its page is open.
    const record = (step) => ({ run: "live", step, ga_steps: 1, micro_batch_size: 8, loss: 3 - step / 100, grad_norm: 1, tokens: 500 });
    await post(url, [0, 1, 2, 3, 4].map(record));
    await page.goto(url + "/#/run/live");
    await ready();
    assert.equal(await page.evaluate(() => window.lossguardDashboard.latestStep), 4);
    await post(url, [5, 6, 7, 8, 9].map(record).concat([{ ...record(10), loss: "NaN" }]));
    await page.waitForFunction(() => window.lossguardDashboard.latestStep === 10, null, { timeout: 15000 });
    await page.waitForSelector(".alert[data-kind='nonfinite']", { timeout: 15000 });
    // A trainer's guard skipped the next NaN step: the episode shows who did what, and when.
    await post(url, [{ ...record(11), loss: "NaN", guard: { action: "skip_step", kind: "nonfinite", severity: "critical", source: "local", first_step: 11, message: "the loss is nan -> skip_step" } }]);
    await page.waitForSelector(".alert[data-kind='nonfinite'] .guard-action[data-action='skip_step']", { timeout: 15000 });
    const shownAction = await page.$eval(".alert[data-kind='nonfinite'] .guard-action", (e) => e.textContent);
    assert.match(shownAction, /rank 0 · step 11: skip_step \(judged on the step\)/);
    assert.deepEqual(pageErrors, [], "no errors in the page");

    // A server with a read token: the page asks for it once and keeps it for the browser session.
    const tokenFile = path.join(dir, "read-token");
    const readToken = "dashboard-read-token-0123456789";
    fs.writeFileSync(tokenFile, readToken + "\n", { mode: 0o600 });
    const guarded = await startServer(path.join(dir, "guarded.db"), ["--read-token-file", tokenFile]);
    try {
      replay(guarded.url, "bug-ga-change.ndjson");  // no write token: writes are open on loopback
      const tokenPage = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const tokenReady = () => tokenPage.waitForFunction(() => window.lossguardDashboard && window.lossguardDashboard.ready && window.lossguardDashboard.hash === location.hash, null, { timeout: 15000 });
      await tokenPage.goto(guarded.url + "/");
      await tokenPage.waitForSelector("#token-form", { timeout: 15000 });
      assert.equal(await tokenPage.$$eval("tr[data-run]", (trs) => trs.length), 0, "no data without the token");
      await tokenPage.screenshot({ path: path.join(outDir, "token.png"), fullPage: true });
      await tokenPage.fill("#token-input", "not-the-token");
      await tokenPage.click("#token-form button");
      await tokenPage.waitForSelector("#token-form p.error", { timeout: 15000 });
      await tokenPage.fill("#token-input", readToken);
      await tokenPage.click("#token-form button");
      await tokenReady();
      assert.deepEqual(await tokenPage.$$eval("tr[data-run]", (trs) => trs.map((tr) => tr.dataset.run)), ["bug-ga-change"]);
      await tokenPage.click("a[href='#/run/bug-ga-change']");
      await tokenReady();
      assert.equal(await tokenPage.evaluate(() => window.lossguardDashboard.charts.length), 4, "the run page loads with the token");
      await tokenPage.reload();
      await tokenReady();
      assert.equal(await tokenPage.$("#token-form"), null, "kept for the session: not asked again");
      // Another browser session asks again.
      const otherSession = await browser.newContext();
      const otherPage = await otherSession.newPage();
      await otherPage.goto(guarded.url + "/");
      await otherPage.waitForSelector("#token-form", { timeout: 15000 });
      await otherSession.close();
    } finally {
      guarded.child.kill("SIGTERM");
      await new Promise((resolve) => guarded.child.on("exit", resolve));
    }
    console.log(`dashboard test passed; screenshots in ${outDir}`);
  } finally {
    await browser.close();
    child.kill("SIGTERM");
    await new Promise((resolve) => child.on("exit", resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
