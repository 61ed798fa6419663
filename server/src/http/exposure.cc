#include "http/exposure.h"

#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>

namespace lossguard::http {

std::optional<std::string> PlaintextWarning(const client::HostPort& listen, bool tls) {
  if (tls || IsLoopback(listen.host)) return std::nullopt;
  return "listening on " + listen.host + ":" + std::to_string(listen.port) +
         " without TLS: the bearer tokens and every record travel in clear text, so anyone on the "
         "network path can read them, and with the write token store or delete runs. Serve HTTPS "
         "(--tls-cert-file, --tls-key-file) or put a TLS proxy in front";
}

Status CheckExposure(const client::HostPort& listen, const std::string& token) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(listen.host, ec);
  if (ec) {
    return Status::Error(
        "--listen host must be an IP address (e.g. 127.0.0.1 or [::1]), but got \"" + listen.host +
        "\"");
  }
  if (token.empty() && !IsLoopback(listen.host)) {
    return Status::Error("refusing to listen on non-loopback address " + listen.host +
                         " without a token: anyone who can reach it could write records. Set "
                         "--token-file or LOSSGUARD_TOKEN, or listen on 127.0.0.1");
  }
  return Status::Ok();
}

bool IsLoopback(const std::string& host) {
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host, ec);
  if (ec) return false;
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6())
        .is_loopback();
  }
  return address.is_loopback();
}

FileLimit RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return {};
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return {static_cast<std::size_t>(limit.rlim_cur), static_cast<std::size_t>(limit.rlim_max)};
}

std::size_t ReservedDescriptors(std::size_t store_threads) {
  constexpr std::size_t kBase = 32;
  constexpr std::size_t kPerDatabaseConnection = 3;
  return kBase + kPerDatabaseConnection * store_threads;
}

ConnectionBudget BudgetConnections(std::size_t max_connections, FileLimit files,
                                   std::size_t reserved) {
  ConnectionBudget budget;
  const std::size_t minimum = reserved + 2;
  if (files.soft < minimum) {
    budget.warning = "the open-file limit is " + std::to_string(files.soft) +
                     ", too low to serve: the server keeps " + std::to_string(reserved) +
                     " descriptors for its databases, outbox and logs; raise it (ulimit -n) to " +
                     "at least " + std::to_string(minimum) + ", better " +
                     std::to_string(max_connections + reserved + kMaxRefusalDescriptors);
    return budget;
  }
  const std::size_t usable = files.soft - reserved;
  budget.refusals = std::min(kMaxRefusalDescriptors, usable / 4);
  budget.sessions = std::min(max_connections, usable - budget.refusals);
  if (budget.sessions < max_connections) {
    budget.warning =
        "--max-connections " + std::to_string(max_connections) + " lowered to " +
        std::to_string(budget.sessions) + ": the open-file limit " + std::to_string(files.soft) +
        " keeps " + std::to_string(reserved) +
        " descriptors for the databases, outbox and logs and " + std::to_string(budget.refusals) +
        " for 503 answers beyond the cap; raise the limit (ulimit -n) to " +
        std::to_string(max_connections + reserved + kMaxRefusalDescriptors) + " to serve that many";
  }
  return budget;
}

}  // namespace lossguard::http
