#include "support/test_ca.h"

#include <chrono>
#include <fstream>
#include <stdexcept>

#include "support/processes.h"

namespace lossguard::testing {

namespace {
void Openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult result = RunCommand(argv, std::chrono::seconds(60));
  if (result.exit_code != 0) {
    throw std::runtime_error("openssl " + args.front() + " failed: " + result.err);
  }
}
}  // namespace

TestCa::TestCa(std::filesystem::path dir, std::string name)
    : dir_(std::move(dir)), name_(std::move(name)) {
  std::filesystem::create_directories(dir_);
  Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", (dir_ / (name_ + ".key")).string(), "-out", certificate().string(), "-days",
           "1", "-subj", "/CN=" + name_, "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
           "keyUsage=critical,keyCertSign,cRLSign"});
}

TestCa::Issued TestCa::Issue(const std::string& name,
                             const std::vector<std::string>& subject_alt_names) const {
  Issued issued{dir_ / (name + ".pem"), dir_ / (name + ".key")};
  const std::filesystem::path request = dir_ / (name + ".csr");
  const std::filesystem::path extensions = dir_ / (name + ".ext");
  std::string names;
  for (const std::string& san : subject_alt_names) names += (names.empty() ? "" : ",") + san;
  std::ofstream(extensions) << "subjectAltName=" << names
                            << "\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n";
  Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
           issued.key.string(), "-out", request.string(), "-subj", "/CN=" + name});
  Openssl({"x509", "-req", "-in", request.string(), "-CA", certificate().string(), "-CAkey",
           (dir_ / (name_ + ".key")).string(), "-CAcreateserial", "-out",
           issued.certificate.string(), "-days", "1", "-extfile", extensions.string()});
  return issued;
}

}  // namespace lossguard::testing
