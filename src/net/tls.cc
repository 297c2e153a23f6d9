#include "net/tls.h"

#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/ssl/error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "net/asio_status.h"

namespace ember::net {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// TLS 1.2 suites: forward-secret AEAD only. TLS 1.3 suites are OpenSSL's defaults (all AEAD).
constexpr const char* kTls12Ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20";
// Ciphertext taken from the socket per read (many records at once).
constexpr size_t kSocketReadBytes = 256 << 10;
// Plaintext encrypted per socket write; bounds the session's memory for any write size.
constexpr size_t kWriteSliceBytes = 1 << 20;
// AsyncWriteSome's unit: small enough that a slow but live peer shows progress well within
// streaming_send_timeout (256 KiB in 30 s is under 9 KB/s).
constexpr size_t kWriteSomeBytes = 256 << 10;

std::string_view SideName(TlsSide side) { return side == TlsSide::kServer ? "server" : "client"; }

// OpenSSL's reason text ("certificate verify failed") without asio's "(SSL routines)".
std::string SslReason(const std::error_code& ec) {
  if (ec.category() == asio::error::get_ssl_category()) {
    if (const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()))) return reason;
  }
  return ec.message();
}

// `path` names a readable file, or why not, naming the config key that set it.
Status CheckReadable(const std::string& path, std::string_view what, std::string_view key) {
  if (path.empty()) return Status::InvalidArgument(fmt::format("{} is not set ({})", what, key));
  std::ifstream file(path);
  if (!file) {
    return Status::FailedPrecondition(
        fmt::format("cannot read {} '{}' ({}): {}", what, path, key, std::strerror(errno)));
  }
  return Status::Ok();
}

Status LoadError(std::string_view what, const std::string& path, const std::error_code& ec) {
  return Status::FailedPrecondition(fmt::format("cannot load {} '{}': {}", what, path, SslReason(ec)));
}

std::string Asn1Text(const ASN1_STRING* s) {
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) return {};
  std::string text(reinterpret_cast<const char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return text;
}

std::string IpText(const ASN1_OCTET_STRING* ip) {
  const unsigned char* p = ASN1_STRING_get0_data(ip);
  if (ASN1_STRING_length(ip) == 4) {
    return asio::ip::address_v4({p[0], p[1], p[2], p[3]}).to_string();
  }
  if (ASN1_STRING_length(ip) == 16) {
    asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), p, bytes.size());
    return asio::ip::address_v6(bytes).to_string();
  }
  return {};
}

std::vector<std::string> SubjectAltNames(X509* cert) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    std::string text;
    if (name->type == GEN_DNS) text = Asn1Text(name->d.dNSName);
    if (name->type == GEN_IPADD) text = IpText(name->d.iPAddress);
    if (!text.empty()) out.push_back(std::move(text));
  }
  GENERAL_NAMES_free(names);
  return out;
}

// Why a handshake failed, in one line naming the peer.
Status HandshakeError(const std::error_code& ec, SSL* ssl, const std::string& peer) {
  std::string context = fmt::format("TLS handshake with {} failed", peer);
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
    return Status::Unavailable(context + ": the peer closed the connection (does it use the same "
                               "connection_security, and trust our certificate?)");
  }
  if (ec.category() != asio::error::get_ssl_category()) return StatusFromAsio(ec, context);
  std::string reason = SslReason(ec);
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) reason += fmt::format(": {}", X509_verify_cert_error_string(verify));
  if (reason == "wrong version number" || reason == "packet length too long" || reason == "http request") {
    reason += " (the peer does not speak TLS: check connection_security on both sides)";
  }
  return Status::FailedPrecondition(fmt::format("{}: {}", context, reason));
}

}  // namespace

// ---- TlsContext ---------------------------------------------------------------------

TlsContext::TlsContext(SecurityMode mode, TlsSide side)
    : mode_(mode),
      side_(side),
      context_(side == TlsSide::kServer ? asio::ssl::context::tls_server : asio::ssl::context::tls_client) {}

Result<std::shared_ptr<TlsContext>> TlsContext::Create(const SecurityOptions& options, TlsSide side) {
  if (options.mode == SecurityMode::kClear) {
    return Status::InvalidArgument("TlsContext::Create: connection_security is clear");
  }
  auto context = std::make_shared<TlsContext>(options.mode, side);
  Status s = context->Load(options);
  if (!s.ok()) {
    return s.WithContext(fmt::format("TLS setup ({} {})", SecurityModeName(options.mode), SideName(side)));
  }
  return context;
}

Status TlsContext::Load(const SecurityOptions& o) {
  SSL_CTX* ctx = context_.native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) return Status::Internal("no usable TLS 1.2 cipher");
  std::error_code ec;
  bool presents_cert = side_ == TlsSide::kServer || mode_ == SecurityMode::kMtls;
  bool verifies_peer = side_ == TlsSide::kClient || mode_ == SecurityMode::kMtls;
  if (presents_cert) {
    EMBER_RETURN_IF_ERROR(CheckReadable(o.cert_file, "the certificate", "ssl_cert"));
    EMBER_RETURN_IF_ERROR(CheckReadable(o.key_file, "the private key", "ssl_private_key"));
    if (context_.use_certificate_chain_file(o.cert_file, ec); ec) return LoadError("the certificate", o.cert_file, ec);
    context_.use_private_key_file(o.key_file, asio::ssl::context::pem, ec);
    if ((ec && SslReason(ec) == "key values mismatch") || (!ec && SSL_CTX_check_private_key(ctx) != 1)) {
      ERR_clear_error();
      return Status::FailedPrecondition(
          fmt::format("the private key '{}' does not match the certificate '{}'", o.key_file, o.cert_file));
    }
    if (ec) return LoadError("the private key", o.key_file, ec);
  }
  if (verifies_peer) {
    EMBER_RETURN_IF_ERROR(CheckReadable(o.ca_file, "the root CA", "ssl_root_cert"));
    if (context_.load_verify_file(o.ca_file, ec); ec) return LoadError("the root CA", o.ca_file, ec);
  }
  if (side_ == TlsSide::kServer) {
    SSL_CTX_set_num_tickets(ctx, 0);  // links are long-lived; no resumption
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (verifies_peer) {
      // Tell clients which CA we accept, so one holding several certificates picks right.
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.ca_file.c_str())) {
        SSL_CTX_set_client_CA_list(ctx, names);
      }
    }
  }
  // Host names are not checked (as FLARE): the peer's identity is its certificate CN,
  // which the cell matches against the name it claims in HELLO.
  auto verify = verifies_peer ? asio::ssl::verify_peer : asio::ssl::verify_none;
  if (side_ == TlsSide::kServer && verifies_peer) verify |= asio::ssl::verify_fail_if_no_peer_cert;
  context_.set_verify_mode(verify, ec);
  if (ec) return LoadError("the verify mode", "", ec);
  return Status::Ok();
}

Result<std::shared_ptr<TlsContext>> MakeTlsContext(const SecurityOptions& options, TlsSide side) {
  if (options.mode == SecurityMode::kClear) return std::shared_ptr<TlsContext>();
  return TlsContext::Create(options, side);
}

// ---- TlsSession ---------------------------------------------------------------------

namespace {

// Ciphertext on its way between the socket and OpenSSL. The session's BIO (below) lets
// OpenSSL read straight from the socket read buffer and append straight to the next
// socket write, with no buffer in between.
struct Ciphertext {
  std::vector<uint8_t> in = std::vector<uint8_t>(kSocketReadBytes);  // the last socket read
  size_t in_pos = 0;                                                  // OpenSSL consumed up to here
  size_t in_end = 0;                                                  // valid bytes in `in`
  std::vector<uint8_t> out;                                           // for the next socket write
};

int CiphertextWrite(BIO* bio, const char* data, size_t size, size_t* written) {
  auto* c = static_cast<Ciphertext*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  auto* bytes = reinterpret_cast<const uint8_t*>(data);  // same element type: insert is a memcpy
  c->out.insert(c->out.end(), bytes, bytes + size);
  *written = size;
  return 1;
}

int CiphertextRead(BIO* bio, char* data, size_t size, size_t* read) {
  auto* c = static_cast<Ciphertext*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  size_t n = std::min(size, c->in_end - c->in_pos);
  *read = n;
  if (n == 0) {
    BIO_set_retry_read(bio);  // "want read": the session reads the socket and retries
    return 0;
  }
  std::memcpy(data, c->in.data() + c->in_pos, n);
  c->in_pos += n;
  return 1;
}

long CiphertextCtrl(BIO* bio, int cmd, long, void*) {
  auto* c = static_cast<Ciphertext*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_PENDING: return static_cast<long>(c->in_end - c->in_pos);
    case BIO_CTRL_WPENDING: return static_cast<long>(c->out.size());
    default: return 0;
  }
}

int CiphertextCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* CiphertextBioMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ember TLS session");
    BIO_meth_set_write_ex(m, CiphertextWrite);
    BIO_meth_set_read_ex(m, CiphertextRead);
    BIO_meth_set_ctrl(m, CiphertextCtrl);
    BIO_meth_set_create(m, CiphertextCreate);
    return m;
  }();
  return method;
}

}  // namespace

// One TLS session over a socket. OpenSSL reads and writes ciphertext through `bio_`
// (above); the session moves it to and from the socket. Everything runs on the socket's
// io thread; pending socket handlers hold a shared_ptr, so the session outlives its
// TlsTransport until they have run.
class TlsSession : public std::enable_shared_from_this<TlsSession> {
 public:
  using Flushed = std::function<void(const std::error_code&)>;

  TlsSession(std::shared_ptr<TlsContext> context, tcp::socket socket);
  ~TlsSession();
  // Makes the SSL object and its BIO; the only step that can fail before I/O.
  Status Init();

  asio::any_io_executor executor() { return socket_.get_executor(); }
  const std::string& remote() const { return remote_; }
  const PeerIdentity& identity() const { return identity_; }

  // Runs the handshake for the context's side; `done` once: OK, or why not.
  void Handshake(std::chrono::milliseconds timeout, std::function<void(Status)> done);
  void Read(std::span<uint8_t> buffer, Transport::IoHandler handler);
  // Writes all of `buffer`, or (`some`) up to kWriteSomeBytes of it.
  void Write(std::span<const uint8_t> buffer, bool some, Transport::IoHandler handler);
  void Close();

 private:
  void WriteFrom(std::span<const uint8_t> buffer, size_t offset, size_t slice, bool all,
                 Transport::IoHandler handler);
  void HandshakeStep();
  void FinishHandshake(Status status);
  void CaptureIdentity();
  // Decrypts what is buffered into `out`; a terminal error is remembered in read_error_.
  size_t Decrypt(std::span<uint8_t> out);
  void ReadSocket(std::span<uint8_t> buffer, Transport::IoHandler handler);
  // Starts a socket write of all pending ciphertext unless one is in flight.
  void Pump();
  // `then` runs once all ciphertext produced so far is written (or failed).
  void FlushThen(Flushed then);
  std::error_code SslError(int ret);

  const std::shared_ptr<TlsContext> context_;

  // Owned by the socket's io thread.
  tcp::socket socket_;
  std::string remote_;
  asio::steady_timer timer_;  // handshake deadline
  SSL* ssl_ = nullptr;
  Ciphertext cipher_;          // read and written by OpenSSL through bio_
  BIO* bio_ = nullptr;         // owned by ssl_
  std::vector<uint8_t> out_;   // ciphertext being written to the socket
  bool writing_ = false;
  std::vector<Flushed> waiting_;    // their ciphertext is still in cipher_.out
  std::vector<Flushed> in_flight_;  // their ciphertext is in out_
  std::error_code read_error_;      // sticky: eof, a TLS alert, ...
  std::error_code write_error_;     // sticky
  std::function<void(Status)> handshake_done_;
  bool handshake_finished_ = false;
  bool timed_out_ = false;
  std::chrono::milliseconds handshake_timeout_{0};
  PeerIdentity identity_;
};

TlsSession::TlsSession(std::shared_ptr<TlsContext> context, tcp::socket socket)
    : context_(std::move(context)), socket_(std::move(socket)), timer_(socket_.get_executor()) {
  std::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
  tcp::endpoint ep = socket_.remote_endpoint(ec);
  remote_ = ec ? std::string("?") : FormatEndpoint(ep);
}

TlsSession::~TlsSession() {
  if (ssl_) SSL_free(ssl_);  // frees bio_
}

Status TlsSession::Init() {
  ssl_ = SSL_new(context_->native().native_handle());
  bio_ = BIO_new(CiphertextBioMethod());
  if (!ssl_ || !bio_) {
    BIO_free(bio_);
    return Status::ResourceExhausted("TLS session for " + remote_ + ": out of memory");
  }
  BIO_set_data(bio_, &cipher_);
  SSL_set_bio(ssl_, bio_, bio_);  // one BIO both ways: takes our single reference
  if (context_->side() == TlsSide::kServer) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
  return Status::Ok();
}

std::error_code TlsSession::SslError(int ret) {
  int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_ZERO_RETURN) return asio::error::eof;  // close_notify
  if (e == SSL_ERROR_SSL) {
    if (unsigned long err = ERR_get_error()) {
      return std::error_code(static_cast<int>(err), asio::error::get_ssl_category());
    }
  }
  return asio::ssl::error::unexpected_result;
}

// ---- handshake

void TlsSession::Handshake(std::chrono::milliseconds timeout, std::function<void(Status)> done) {
  handshake_done_ = std::move(done);
  handshake_timeout_ = timeout;
  timer_.expires_after(timeout);
  timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
    if (ec || self->handshake_finished_) return;
    self->timed_out_ = true;
    self->Close();  // pending socket operations fail, which finishes the handshake
  });
  HandshakeStep();
}

void TlsSession::HandshakeStep() {
  auto self = shared_from_this();
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    // Our last flight (the client's Finished) must reach the peer before we only read.
    return FlushThen([self](const std::error_code& ec) {
      self->FinishHandshake(ec ? HandshakeError(ec, self->ssl_, self->remote_) : Status::Ok());
    });
  }
  if (SSL_get_error(ssl_, r) == SSL_ERROR_WANT_READ) {
    return FlushThen([self](const std::error_code& ec) {
      if (ec) return self->FinishHandshake(HandshakeError(ec, self->ssl_, self->remote_));
      self->socket_.async_read_some(asio::buffer(self->cipher_.in), [self](const std::error_code& ec, size_t n) {
        if (ec) return self->FinishHandshake(HandshakeError(ec, self->ssl_, self->remote_));
        self->cipher_.in_pos = 0;
        self->cipher_.in_end = n;
        self->HandshakeStep();
      });
    });
  }
  Status why = HandshakeError(SslError(r), ssl_, remote_);
  // Send our alert (e.g. "unknown ca") so the peer learns why, then report.
  FlushThen([self, why](const std::error_code&) { self->FinishHandshake(why); });
}

void TlsSession::FinishHandshake(Status status) {
  if (handshake_finished_) return;
  handshake_finished_ = true;
  timer_.cancel();
  if (timed_out_) {
    status = Status::DeadlineExceeded(
        fmt::format("TLS handshake with {}: not done within {} ms", remote_, handshake_timeout_.count()));
  }
  if (status.ok()) CaptureIdentity();
  auto done = std::move(handshake_done_);
  done(std::move(status));
}

void TlsSession::CaptureIdentity() {
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (!cert) return;
  identity_.verified = SSL_get_verify_result(ssl_) == X509_V_OK;
  X509_NAME* subject = X509_get_subject_name(cert);
  int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index >= 0) identity_.common_name = Asn1Text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
  identity_.subject_alt_names = SubjectAltNames(cert);
}

// ---- reading

size_t TlsSession::Decrypt(std::span<uint8_t> out) {
  size_t total = 0;
  while (total < out.size() && !read_error_) {
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(ssl_, out.data() + total, out.size() - total, &n);
    if (r == 1) {
      total += n;
      continue;
    }
    if (SSL_get_error(ssl_, r) == SSL_ERROR_WANT_READ) break;
    read_error_ = SslError(r);
  }
  Pump();  // reading may have produced output (TLS 1.3 key updates, alerts)
  return total;
}

void TlsSession::Read(std::span<uint8_t> buffer, Transport::IoHandler handler) {
  size_t n = Decrypt(buffer);
  if (n > 0 || read_error_) {
    std::error_code ec = n > 0 ? std::error_code() : read_error_;
    return asio::post(socket_.get_executor(), [handler = std::move(handler), ec, n] { handler(ec, n); });
  }
  ReadSocket(buffer, std::move(handler));
}

void TlsSession::ReadSocket(std::span<uint8_t> buffer, Transport::IoHandler handler) {
  // OpenSSL wants more, so it has consumed all of cipher_.in.
  socket_.async_read_some(asio::buffer(cipher_.in), [self = shared_from_this(), buffer, handler = std::move(handler)](
                                                        const std::error_code& ec, size_t n) mutable {
    if (ec) return handler(ec, 0);  // eof without close_notify reads as eof too
    self->cipher_.in_pos = 0;
    self->cipher_.in_end = n;
    size_t got = self->Decrypt(buffer);
    if (got > 0) return handler({}, got);  // an error after it is reported next time
    if (self->read_error_) return handler(self->read_error_, 0);
    self->ReadSocket(buffer, std::move(handler));
  });
}

// ---- writing

void TlsSession::Write(std::span<const uint8_t> buffer, bool some, Transport::IoHandler handler) {
  WriteFrom(buffer, 0, some ? kWriteSomeBytes : kWriteSliceBytes, !some, std::move(handler));
}

// Encrypts the next `slice` bytes of `buffer` (our BIO never pushes back, so a slice goes
// whole), writes the ciphertext to the socket, and continues from there if `all`.
void TlsSession::WriteFrom(std::span<const uint8_t> buffer, size_t offset, size_t slice, bool all,
                           Transport::IoHandler handler) {
  size_t n = std::min(slice, buffer.size() - offset);
  size_t written = 0;
  ERR_clear_error();
  if (!write_error_ && n > 0) {
    if (int r = SSL_write_ex(ssl_, buffer.data() + offset, n, &written); r != 1) write_error_ = SslError(r);
  }
  if (write_error_) {
    return asio::post(socket_.get_executor(), [handler = std::move(handler), ec = write_error_] { handler(ec, 0); });
  }
  FlushThen([self = shared_from_this(), buffer, end = offset + n, slice, all, handler = std::move(handler)](
                const std::error_code& ec) mutable {
    if (ec) return handler(ec, 0);
    if (!all || end == buffer.size()) return handler(ec, end);
    self->WriteFrom(buffer, end, slice, all, std::move(handler));
  });
}

void TlsSession::FlushThen(Flushed then) {
  waiting_.push_back(std::move(then));
  Pump();
}

void TlsSession::Pump() {
  if (writing_) return;
  if (cipher_.out.empty() || write_error_) {
    // Nothing left to write for these waiters (or writing failed): answer them, never inline.
    if (waiting_.empty()) return;
    return asio::post(socket_.get_executor(), [waiters = std::exchange(waiting_, {}), ec = write_error_] {
      for (const Flushed& w : waiters) w(ec);
    });
  }
  out_.clear();
  std::swap(out_, cipher_.out);  // the buffers trade places; neither is copied
  in_flight_ = std::exchange(waiting_, {});
  writing_ = true;
  asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this()](const std::error_code& ec, size_t) {
    self->writing_ = false;
    if (ec) self->write_error_ = ec;
    for (const Flushed& w : std::exchange(self->in_flight_, {})) w(ec);
    self->Pump();
  });
}

void TlsSession::Close() {
  std::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

// ---- TlsTransport -------------------------------------------------------------------

TlsTransport::TlsTransport(std::shared_ptr<TlsSession> session) : session_(std::move(session)) {}
TlsTransport::~TlsTransport() { session_->Close(); }
asio::any_io_executor TlsTransport::executor() { return session_->executor(); }
void TlsTransport::AsyncReadSome(std::span<uint8_t> buffer, IoHandler handler) {
  session_->Read(buffer, std::move(handler));
}
void TlsTransport::AsyncWrite(std::span<const uint8_t> buffer, IoHandler handler) {
  session_->Write(buffer, /*some=*/false, std::move(handler));
}
void TlsTransport::AsyncWriteSome(std::span<const uint8_t> buffer, IoHandler handler) {
  session_->Write(buffer, /*some=*/true, std::move(handler));
}
void TlsTransport::Close() { session_->Close(); }
const std::string& TlsTransport::remote_address() const { return session_->remote(); }
PeerIdentity TlsTransport::peer_identity() const { return session_->identity(); }

// ---- handshakes and dialing ---------------------------------------------------------

void HandshakeTls(std::shared_ptr<TlsContext> context, tcp::socket socket, std::chrono::milliseconds timeout,
                  DialDone done) {
  auto session = std::make_shared<TlsSession>(std::move(context), std::move(socket));
  asio::dispatch(session->executor(), [session, timeout, done = std::move(done)]() mutable {
    if (Status s = session->Init(); !s.ok()) return done(s);
    session->Handshake(timeout, [session, done = std::move(done)](Status s) {
      if (!s.ok()) {
        session->Close();
        return done(s);
      }
      done(std::unique_ptr<Transport>(std::make_unique<TlsTransport>(session)));
    });
  });
}

void DialTls(asio::io_context& io, const std::string& address, std::chrono::milliseconds timeout,
             std::shared_ptr<TlsContext> context, DialDone done) {
  auto deadline = Clock::now() + timeout;
  DialTcpSocket(io, address, timeout,
                [context = std::move(context), deadline, done = std::move(done)](Result<tcp::socket> s) mutable {
                  if (!s.ok()) return done(s.status());
                  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
                  HandshakeTls(std::move(context), std::move(*s), std::max(left, std::chrono::milliseconds(1)),
                               std::move(done));
                });
}

void DialSecure(asio::io_context& io, const std::string& address, std::chrono::milliseconds timeout,
                std::shared_ptr<TlsContext> tls, DialDone done) {
  if (!tls) return DialTcp(io, address, timeout, std::move(done));
  DialTls(io, address, timeout, std::move(tls), std::move(done));
}

SocketUpgrade TlsAcceptUpgrade(std::shared_ptr<TlsContext> tls, std::chrono::milliseconds timeout) {
  if (!tls) return nullptr;
  return [tls = std::move(tls), timeout](tcp::socket socket, DialDone done) {
    HandshakeTls(tls, std::move(socket), timeout, std::move(done));
  };
}

}  // namespace ember::net
