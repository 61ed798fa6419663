#pragma once

#include "http/router.h"
#include "store/store.h"

namespace lossguard::api {

// Registers REST API v1 and /healthz on `router`. Handlers keep a reference to `store`, which must
// outlive the router. Write endpoints (POST) are registered as requiring the router's token.
void RegisterApi(http::Router& router, store::Store& store);

}  // namespace lossguard::api
