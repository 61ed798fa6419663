#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace lossguard::http {

class Session;

// The live connections, so that shutdown can reach each of them and the listener can cap their
// number. Thread-safe.
class SessionRegistry {
 public:
  void Add(const std::shared_ptr<Session>& session);
  void Remove(const Session* session);
  std::size_t Size();
  void ForEach(const std::function<void(const std::shared_ptr<Session>&)>& fn);

 private:
  std::mutex mutex_;
  std::unordered_map<const Session*, std::weak_ptr<Session>> sessions_;
};

}  // namespace lossguard::http
