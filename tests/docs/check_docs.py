#!/usr/bin/env python3
"""Keeps README.md and docs/ true to the code:

- README.md stays a landing page (at most 200 lines);
- every relative link (and its #anchor) in README.md and docs/*.md leads somewhere;
- every flag documented for one of the project's programs is one that program's --help lists, and
  every flag mentioned on its own (`--flag`) belongs to one of them;
- docs/rest-api.md names every route of schema/openapi.json;
- each example answer in docs/rest-api.md (a json block after `<!-- answer: METHOD TARGET
  [BODY] [STATUS] -->`) is what a fresh real server answers, requests run in the page's order;
  times (keys ending in _at or _seen, and "time") may differ, not their presence or type.

Usage: check_docs.py SOURCE_DIR BUILD_DIR (the server and CLI from BUILD_DIR/server).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

FAILURES = []


def fail(message):
    FAILURES.append(message)


def markdown_files(source):
    files = [os.path.join(source, "README.md")]
    docs = os.path.join(source, "docs")
    files += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    return files + [os.path.join(source, "analyzers", "README.md")]


def code_spans(text):
    """(fenced blocks as lists of lines, inline code spans) outside and inside fences."""
    blocks, inline, block, fenced = [], [], None, False
    for line in text.split("\n"):
        if line.startswith("```"):
            if fenced:
                blocks.append(block)
            block, fenced = [], not fenced
            continue
        if fenced:
            block.append(line)
        else:
            inline += re.findall(r"`([^`]+)`", line)
    return blocks, inline


def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    out, fenced = set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def check_links(source, files):
    for path in files:
        text = open(path, encoding="utf-8").read()
        text = re.sub(r"```.*?```", "", text, flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
                if file_part else path
            where = os.path.relpath(path, source)
            if not os.path.exists(resolved):
                fail(f"{where}: link to {target}: no such file")
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                fail(f"{where}: link to {target}: no heading with that anchor")


def help_flags(argv):
    try:
        result = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=60)
    except OSError as error:
        fail(f"{' '.join(argv)} --help: {error}")
        return set()
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", result.stdout + result.stderr))


def program_flags(paths):
    """Program name as written in the docs -> the flags its --help lists."""
    programs = {"lossguard-server": help_flags([paths["server"]])}
    cli = paths["cli"]
    listing = subprocess.run([cli, "--help"], capture_output=True, text=True).stdout
    subcommands = re.findall(r"^  ([a-z]+)\s", listing.split("Subcommands:")[1], re.M)
    for sub in subcommands:
        programs[f"lossguard {sub}"] = help_flags([cli, sub])
    programs["demo_trainer"] = help_flags([paths["demo_trainer"]])
    for name in ("ingest_bench", "ingest_limit_bench", "scale_bench", "analyzer_cost_bench",
                 "handoff_bench", "linear_loss_bench"):
        programs[name] = help_flags([os.path.join(paths["bench_dir"], name)])
    return programs


def check_flags(files, programs, source):
    known = set().union(*programs.values())
    # Flags of other tools that the pages mention on their own.
    others = {"--no-build-isolation", "--test-dir", "--install", "--rerun-failed",
              "--output-on-failure", "--component", "--force-reinstall", "--no-deps",
              "--benchmark_min_time", "--help", "--nproc-per-node", "--data-binary", "--check"}
    by_length = sorted(programs, key=len, reverse=True)
    for path in files:
        where = os.path.relpath(path, source)
        blocks, inline = code_spans(open(path, encoding="utf-8").read())
        commands = list(inline)
        for block in blocks:
            command = None
            for line in block:
                continued = command is not None and (command.endswith("\\") or line.startswith(" "))
                if continued:
                    command += " " + line
                    continue
                if command is not None:
                    commands.append(command)
                command = line
            if command is not None:
                commands.append(command)
        for command in commands:
            text = command.split(" #")[0]
            owner = next((p for p in by_length if re.search(r"(^|[\s/])" + re.escape(p) + r"\b",
                                                            text)), None)
            if owner is None:
                if re.fullmatch(r"--[a-z][a-z0-9-]*(( |=)\S+)?", command.strip()):
                    flag = command.strip().split()[0].split("=")[0]
                    if flag not in known and flag not in others:
                        fail(f"{where}: `{command}`: no program of the project has {flag}")
                continue
            start = re.search(r"(^|[\s/])" + re.escape(owner) + r"\b", text).end()
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text[start:]):
                if flag not in programs[owner]:
                    fail(f"{where}: `{text.strip()[:100]}`: {owner} has no {flag}")


def check_routes(source):
    document = json.load(open(os.path.join(source, "schema", "openapi.json")))
    page = open(os.path.join(source, "docs", "rest-api.md"), encoding="utf-8").read()
    for path, methods in document["paths"].items():
        for method in methods:
            route = f"{method.upper()} {path}"
            if route not in page and f"`{method.upper()} {path}" not in page:
                fail(f"docs/rest-api.md does not describe {route} (schema/openapi.json has it)")


def check_kinds(source):
    """Every alert kind the API can answer is described where readers look for it."""
    document = json.load(open(os.path.join(source, "schema", "openapi.json")))
    kinds = document["components"]["schemas"]["Alert"]["properties"]["kind"]["enum"]
    for page in ("analyzers/README.md", "docs/analyzers.md"):
        text = open(os.path.join(source, page), encoding="utf-8").read()
        for kind in kinds:
            if f"`{kind}`" not in text:
                fail(f"{page}: the alert kind `{kind}` is not described")


def masked(value, key=""):
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if (key.endswith("_at") or key.endswith("_seen") or key == "time") and \
            isinstance(value, (int, float)) and not isinstance(value, bool):
        return "<time>"
    return value


def check_examples(source, server):
    page = open(os.path.join(source, "docs", "rest-api.md"), encoding="utf-8").read()
    bodies = {name: body for name, body in
              re.findall(r"<!-- body: (\S+) -->\n```[a-z]*\n(.*?)```", page, re.S)}
    answers = re.findall(r"<!-- answer: (.*?) -->\n```json\n(.*?)```", page, re.S)
    if not answers:
        fail("docs/rest-api.md has no checked example answers")
        return
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [server, "--listen", "127.0.0.1:0",
             "--db", os.path.join(directory, "db")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            url = None
            for line in server.stdout:
                if "listening on" in line:
                    url = "http://127.0.0.1:" + line.rsplit(":", 1)[1].strip()
                    break
            if url is None:
                fail("the server did not start")
                return
            for marker, documented in answers:
                words = marker.split()
                method, target = words[0], words[1]
                body = next((bodies[w] for w in words[2:] if w in bodies), None)
                status = next((int(w) for w in words[2:] if w.isdigit()), 200)
                request = urllib.request.Request(
                    url + target, method=method,
                    data=body.encode() if body is not None else None,
                    headers={"Content-Type": "application/x-ndjson"} if body else {})
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        got_status, text = response.status, response.read()
                except urllib.error.HTTPError as error:
                    got_status, text = error.code, error.read()
                if got_status != status:
                    fail(f"docs/rest-api.md: {marker}: the server answered {got_status}")
                    continue
                try:
                    expected = json.loads(documented)
                except ValueError as error:
                    fail(f"docs/rest-api.md: {marker}: the documented answer is not JSON: {error}")
                    continue
                actual = json.loads(text)
                if masked(expected) != masked(actual):
                    fail(f"docs/rest-api.md: {marker}: documented\n  {json.dumps(expected)}\n"
                         f"but the server answers\n  {json.dumps(actual)}")
        finally:
            server.terminate()
            server.wait(timeout=30)


def main():
    if len(sys.argv) != 6:
        sys.exit("usage: check_docs.py SOURCE LOSSGUARD_SERVER LOSSGUARD_CLI DEMO_TRAINER BENCH_DIR")
    source = sys.argv[1]
    paths = dict(zip(("server", "cli", "demo_trainer", "bench_dir"), sys.argv[2:]))
    files = markdown_files(source)
    readme_lines = open(files[0], encoding="utf-8").read().count("\n")
    if readme_lines > 200:
        fail(f"README.md has {readme_lines} lines: a landing page has at most 200 (docs/ holds "
             "the rest)")
    check_links(source, files)
    check_flags(files, program_flags(paths), source)
    check_routes(source)
    check_kinds(source)
    check_examples(source, paths["server"])
    for message in FAILURES:
        print("check_docs:", message)
    if FAILURES:
        sys.exit(1)
    print(f"check_docs: {len(files)} pages, links, flags, routes and example answers agree")


if __name__ == "__main__":
    main()
