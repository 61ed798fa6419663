#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lossguard/base/result.h"
#include "store/types.h"

namespace lossguard::notify {

// How a notification is written for its receiver.
enum class WebhookFormat {
  kJson,   // lossguard's own body (the alert as GET /api/v1/alerts shows it, the event, the key)
  kSlack,  // {"text": ...}: Slack incoming webhooks, and the chat tools that accept their format
};

// A --notify-webhook: "[json:|slack:]URL", URL http:// or https://.
struct Webhook {
  std::string url;
  WebhookFormat format = WebhookFormat::kJson;
  // id: the SHA-256 of the format and URL (the outbox's key: URLs such as Slack's hold a secret,
  // which the database does not keep); label: the format, scheme, host and port and a few digits
  // of the id, for logs and metrics (the path, where such secrets are, is left out).
  store::NotifyTarget target;
};

// The error names the flag's text and what is wrong with it.
Result<Webhook, std::string> ParseWebhook(std::string_view flag);

// The request body of one notification. `dropped_before`: notifications to this target dropped
// (outbox full) since the last one it received; the body says so when it is not 0.
std::string WebhookBody(WebhookFormat format, const store::OutboxNotification& notification,
                        std::int64_t dropped_before);

}  // namespace lossguard::notify
