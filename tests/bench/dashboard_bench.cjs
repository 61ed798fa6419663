// How long the dashboard's run page takes to render a long run in a real browser: the real server
// holding STEPS steps of one run, Debian's Chromium (playwright-core) loading /#/run/long; time from
// navigation to all charts drawn (window.lossguardDashboard.ready), median of LOADS loads.
//   NODE_PATH=build/web/npm/node_modules node tests/bench/dashboard_bench.cjs \
//     build/server/lossguard-server build/web/dist [STEPS=1000000] [LOADS=7]
"use strict";
const { chromium } = require("playwright-core");
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const [serverBinary, webRoot, stepsArg, loadsArg] = process.argv.slice(2);
const steps = Number(stepsArg || 1000000), loads = Number(loadsArg || 7);

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lossguard-dash-"));
  const child = spawn(serverBinary, ["--listen", "127.0.0.1:0", "--db", path.join(dir, "db"), "--web-root", webRoot, "--sync", "normal"],
                      { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => { out += d; const m = out.match(/listening on (http:\/\/\S+)/); if (m) resolve(m[1]); });
    child.on("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
  try {
    const started = Date.now();
    for (let first = 0; first < steps; first += 10000) {
      let body = "";
      for (let s = first; s < Math.min(steps, first + 10000); ++s) {
        const loss = 2 + 8 / (1 + s / 1000) + 0.05 * Math.sin(s);
        body += `{"run":"long","step":${s},"ga_steps":8,"micro_batch_size":4,"loss":${loss},"ref_loss":${loss},"grad_norm":${1 + 0.2 * Math.cos(s)},"tokens":16000}\n`;
      }
      const response = await fetch(url + "/api/v1/steps", { method: "POST", headers: { "Content-Type": "application/x-ndjson" }, body });
      if (response.status !== 200) throw new Error(await response.text());
    }
    console.log(`ingested ${steps} steps in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const browser = await chromium.launch({
      executablePath: process.env.LOSSGUARD_CHROMIUM || "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const times = [];
    let points = 0;
    for (let i = 0; i < loads; ++i) {
      await page.goto("about:blank");
      const t0 = Date.now();
      await page.goto(url + "/#/run/long");
      await page.waitForFunction(() => window.lossguardDashboard && window.lossguardDashboard.ready, null, { timeout: 30000 });
      times.push(Date.now() - t0);
      points = await page.evaluate(() => window.lossguardDashboard.points);
    }
    await browser.close();
    times.sort((a, b) => a - b);
    console.log(`run page of a ${steps}-step run: median ${times[Math.floor(times.length / 2)]} ms, max ${times[times.length - 1]} ms over ${loads} loads (${points} points per series, navigation to charts drawn)`);
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => child.on("exit", resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
