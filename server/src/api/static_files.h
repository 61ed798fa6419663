#pragma once

#include <filesystem>

#include "http/router.h"

namespace lossguard::api {

// Serves the built-in web dashboard from `web_root` (files as the build's web target lays them
// out): GET / is index.html, GET /assets/{file} any other file there. Only single path segments
// are served (no directories, no dot-files), so nothing outside web_root can be reached. Without
// index.html, / answers 404 saying the dashboard was not built.
void RegisterStaticFiles(http::Router& router, const std::filesystem::path& web_root);

}  // namespace lossguard::api
