#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace lossguard::testing {

// A throwaway certificate authority made by the test with the openssl command (EC P-256, valid
// for a day), and server certificates it signs.
class TestCa {
 public:
  // Creates the CA's key and certificate in `dir` under `name` (name.pem, name.key).
  TestCa(std::filesystem::path dir, std::string name = "test-ca");

  std::filesystem::path certificate() const { return dir_ / (name_ + ".pem"); }

  struct Issued {
    std::filesystem::path certificate, key;
  };
  // A server certificate for `subject_alt_names` (e.g. {"DNS:localhost", "IP:127.0.0.1"}).
  Issued Issue(const std::string& name, const std::vector<std::string>& subject_alt_names) const;

 private:
  std::filesystem::path dir_;
  std::string name_;
};

}  // namespace lossguard::testing
