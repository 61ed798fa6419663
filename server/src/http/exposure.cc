#include "http/exposure.h"

#include <sys/resource.h>

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

}  // namespace lossguard::http
