#include "common/tls_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/strings.h"

namespace sluice {

namespace {

std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no PEM data";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        StrCat(flag, " ", path, ": cannot read: ", strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(StrCat(flag, " ", path, ": read error"));
  }
  return text.str();
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

BioPtr MemBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Never prompts for a passphrase: an encrypted key is refused.
int NoPassphrase(char*, int, int, void*) { return -1; }

// The certificates in a PEM text, in order; an error if there is none or one is broken.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const std::string& pem,
                                                       const std::string& what) {
  std::vector<X509Ptr> certs;
  BioPtr bio = MemBio(pem);
  ERR_clear_error();
  while (true) {
    X509* cert = PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr);
    if (cert == nullptr) break;
    certs.emplace_back(cert);
  }
  // The loop ends at the end of the data (PEM_R_NO_START_LINE) or at a broken block.
  unsigned long code = ERR_peek_last_error();
  if (certs.empty() || (code != 0 && ERR_GET_REASON(code) != PEM_R_NO_START_LINE)) {
    return absl::InvalidArgumentError(
        StrCat(what, ": not a PEM certificate (", OpenSslError(), ")"));
  }
  ERR_clear_error();
  return certs;
}

}  // namespace

absl::StatusOr<TlsPem> LoadTlsPem(const TlsFiles& files, const std::string& flag_prefix) {
  const std::string cert_flag = flag_prefix + "cert";
  const std::string key_flag = flag_prefix + "key";
  const std::string ca_flag = flag_prefix + "ca";
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError(
        StrCat(files.cert.empty() ? key_flag : cert_flag, " needs ",
               files.cert.empty() ? cert_flag : key_flag, " too (a certificate and its key)"));
  }
  TlsPem pem;
  if (!files.cert.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile(files.cert, cert_flag);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile(files.key, key_flag);
    if (!key.ok()) return key.status();
    absl::StatusOr<std::vector<X509Ptr>> chain =
        ParseCertificates(*cert, StrCat(cert_flag, " ", files.cert));
    if (!chain.ok()) return chain.status();
    BioPtr key_bio = MemBio(*key);
    ERR_clear_error();
    PkeyPtr pkey(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
    if (pkey == nullptr) {
      return absl::InvalidArgumentError(
          StrCat(key_flag, " ", files.key,
                 ": not an unencrypted PEM private key (", OpenSslError(), ")"));
    }
    if (X509_check_private_key(chain->front().get(), pkey.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(StrCat(key_flag, " ", files.key,
                                               ": is not the key of the certificate in ",
                                               files.cert));
    }
    pem.cert = std::move(*cert);
    pem.key = std::move(*key);
  }
  if (!files.ca.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile(files.ca, ca_flag);
    if (!ca.ok()) return ca.status();
    absl::StatusOr<std::vector<X509Ptr>> certs =
        ParseCertificates(*ca, StrCat(ca_flag, " ", files.ca));
    if (!certs.ok()) return certs.status();
    pem.ca = std::move(*ca);
  }
  return pem;
}

DialOptions ReadClientTls(ConfigNode& node, std::string_view key) {
  DialOptions out;
  if (!node.Has(key)) return out;
  ConfigNode tls = node.Map(key);
  tls.AllowOnly({"ca", "cert", "key", "server_name"});
  const TlsFiles files{.cert = tls.OptionalString("cert", ""),
                       .key = tls.OptionalString("key", ""),
                       .ca = tls.OptionalString("ca", "")};
  out.server_name = tls.OptionalString("server_name", "");
  if (!tls.status().ok()) return out;
  if (files.empty()) {
    node.Fail(key, "names no file (ca to verify the peers, cert + key for mutual TLS)");
    return out;
  }
  absl::StatusOr<TlsPem> pem = LoadTlsPem(files, "");
  if (!pem.ok()) {
    node.Fail(key, std::string(pem.status().message()));
    return out;
  }
  out.tls = std::move(*pem);
  return out;
}

}  // namespace sluice
