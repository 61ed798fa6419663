#include "notify/webhook.h"

#include <openssl/evp.h>

#include <array>
#include <nlohmann/json.hpp>

#include "api/json_views.h"
#include "lossguard/client/url.h"

namespace lossguard::notify {

namespace {
std::string Sha256Hex(std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed (OpenSSL)");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

std::string SlackText(const store::OutboxNotification& n, std::int64_t dropped_before) {
  const store::Alert& a = n.alert;
  const std::string severity(analyzers::SeverityName(a.severity));
  std::string icon = n.event == analyzers::NotificationEvent::kResolved ? ":white_check_mark:"
                     : a.severity == analyzers::Severity::kCritical     ? ":rotating_light:"
                                                                        : ":warning:";
  std::string steps = a.first_step == a.last_step ? "step " + std::to_string(a.first_step)
                                                  : "steps " + std::to_string(a.first_step) + "-" +
                                                        std::to_string(a.last_step);
  std::string text = icon + " lossguard: " + severity + " " +
                     std::string(analyzers::KindName(a.kind)) + " alert " +
                     std::string(analyzers::NotificationEventName(n.event)) + " on run *" + a.run +
                     "* (" + steps + ", alert " + std::to_string(a.id) + ")\n> " + a.message;
  if (dropped_before > 0) {
    text += "\n_" + std::to_string(dropped_before) +
            " earlier notifications were dropped: the outbox was full while this receiver was "
            "unreachable._";
  }
  return text;
}
}  // namespace

Result<Webhook, std::string> ParseWebhook(std::string_view flag) {
  Webhook hook;
  std::string_view url = flag;
  if (url.substr(0, 6) == "slack:") {
    hook.format = WebhookFormat::kSlack;
    url.remove_prefix(6);
  } else if (url.substr(0, 5) == "json:") {
    url.remove_prefix(5);
  }
  auto parsed = client::ParseHttpUrl(url);
  if (!parsed) {
    return std::string("--notify-webhook \"") + std::string(flag) + "\": " + parsed.error() +
           " (expected [json:|slack:]http[s]://HOST[:PORT]/PATH)";
  }
  hook.url = std::string(url);
  const char* format = hook.format == WebhookFormat::kSlack ? "slack" : "json";
  hook.target.id = Sha256Hex(std::string(format) + " " + hook.url);
  const client::HttpUrl& u = parsed.value();
  const std::string host = u.endpoint.host.find(':') != std::string::npos
                               ? "[" + u.endpoint.host + "]"
                               : u.endpoint.host;
  hook.target.label = std::string(format) + ":" + (u.tls ? "https://" : "http://") + host + ":" +
                      std::to_string(u.endpoint.port) + "#" + hook.target.id.substr(0, 8);
  return hook;
}

std::string WebhookBody(WebhookFormat format, const store::OutboxNotification& n,
                        std::int64_t dropped_before) {
  if (format == WebhookFormat::kSlack) {
    return nlohmann::json{{"text", SlackText(n, dropped_before)}}.dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  nlohmann::json alert = api::AlertToJson(n.alert);
  alert["attempt"] = n.attempt;
  nlohmann::json body = {{"source", "lossguard"},
                         {"version", 1},
                         {"idempotency_key", n.idempotency_key},
                         {"event", analyzers::NotificationEventName(n.event)},
                         {"alert", std::move(alert)},
                         {"dropped_before", dropped_before}};
  // As the API writes JSON: messages are the analyzers' own text, but a byte that is not UTF-8 is
  // replaced rather than failing the notification.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace lossguard::notify
