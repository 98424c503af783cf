#include "udp_responder.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace tsnet {

namespace {

constexpr size_t kBatch = 32;
constexpr size_t kMaxDatagram = 4096;  // larger is no DNS query of ours: dropped (MSG_TRUNC)
constexpr size_t kOurUdpSize = 1232;     // what we advertise in our OPT record (DNS flag day 2020)
constexpr size_t kQueueToJs = 4096;      // datagrams waiting for JS; beyond it they are dropped
constexpr uint16_t kTypeOpt = 41;

// A datagram for JavaScript, with where it came from.
struct Query {
  std::vector<uint8_t> bytes;
  std::string address;
  uint16_t port;
};

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

Napi::Error Errno(Napi::Env env, int err, const char* syscall) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + std::strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

bool ParseAddress(const std::string& text, uint16_t port, sockaddr_storage* ss, socklen_t* len) {
  std::memset(ss, 0, sizeof(*ss));
  auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

// A small, per-thread generator for the round-robin order; quality is not a concern.
uint32_t NextRandom() {
  thread_local uint32_t state = 0x9e3779b9u ^ static_cast<uint32_t>(reinterpret_cast<uintptr_t>(&state));
  state ^= state << 13;
  state ^= state >> 17;
  state ^= state << 5;
  return state;
}

}  // namespace

Napi::Function UdpResponder::Define(Napi::Env env) {
  return DefineClass(env, "UdpResponder",
                     {InstanceMethod<&UdpResponder::Send>("send"), InstanceMethod<&UdpResponder::SetAnswer>("setAnswer"),
                      InstanceMethod<&UdpResponder::SetClients>("setClients"), InstanceMethod<&UdpResponder::Stats>("stats"),
                      InstanceMethod<&UdpResponder::LocalPort>("localPort"), InstanceMethod<&UdpResponder::Close>("close")});
}

UdpResponder::UdpResponder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpResponder>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "address must be a string");
  if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "port must be a number");
  if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "onQuery must be a function");
  sockaddr_storage addr;
  socklen_t addrLen;
  uint32_t port = info[1].As<Napi::Number>().Uint32Value();
  if (port > 65535 || !ParseAddress(info[0].As<Napi::String>().Utf8Value(), static_cast<uint16_t>(port), &addr, &addrLen))
    throw Napi::TypeError::New(env, "not an IP address and port");
  const int family = addr.ss_family;

  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw Errno(env, errno, "socket");
  if (family == AF_INET6) {
    int one = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  // Room for a burst while the reader is descheduled (dnsperf keeps 100 queries in flight per client).
  int size = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addrLen) != 0) {
    int err = errno;
    close(fd);
    throw Errno(env, err, "bind");
  }
  if (int err = reader_.Open(fd); err != 0) throw Errno(env, err, "eventfd");
  reader_.Start(Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "tsnet:udp.responder", kQueueToJs, 1), [this]() { Loop(); });
}

UdpResponder::~UdpResponder() { reader_.Stop(); }

bool UdpResponder::ClientAllowed(const sockaddr_storage& from) const {
  const uint8_t* addr;
  if (from.ss_family == AF_INET) addr = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in&>(from).sin_addr);
  else addr = reinterpret_cast<const sockaddr_in6&>(from).sin6_addr.s6_addr;
  for (const Prefix& p : clients_) {
    if (p.family != from.ss_family) continue;
    int full = p.bits / 8, rest = p.bits % 8;
    if (std::memcmp(addr, p.bytes, full) != 0) continue;
    if (rest != 0) {
      uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
      if ((addr[full] & mask) != (p.bytes[full] & mask)) continue;
    }
    return true;
  }
  return false;
}

// Caller holds mu_.
size_t UdpResponder::Answer(const uint8_t* q, size_t n, const sockaddr_storage& from, uint8_t* out, size_t cap) {
  if (n < 12 + 5) return 0;
  if ((q[2] & 0x80) != 0 || (q[2] & 0x78) != 0) return 0;  // a response, or an opcode other than QUERY
  if (Be16(q + 4) != 1 || Be16(q + 6) != 0 || Be16(q + 8) != 0 || Be16(q + 10) > 1) return 0;
  // The question: labels, lower-cased into the key; a pointer here would be malformed.
  std::string key;
  key.reserve(64);
  size_t pos = 12;
  for (;;) {
    if (pos >= n) return 0;
    uint8_t len = q[pos];
    if (len == 0) {
      key.push_back(0);
      pos++;
      break;
    }
    if ((len & 0xc0) != 0 || pos + 1 + len > n || key.size() + 1 + len > 255) return 0;
    key.push_back(static_cast<char>(len));
    for (size_t i = pos + 1; i <= pos + len; i++) key.push_back(static_cast<char>(q[i] >= 'A' && q[i] <= 'Z' ? q[i] + 32 : q[i]));
    pos += 1 + len;
  }
  if (pos + 4 > n || Be16(q + pos + 2) != 1) return 0;  // class IN only
  key.append(reinterpret_cast<const char*>(q + pos), 2);
  pos += 4;
  const size_t questionEnd = pos;
  size_t limit = 512;
  bool edns = false;
  if (Be16(q + 10) == 1) {
    // The one additional record must be an OPT of version 0 on the root name, and the last bytes.
    if (pos + 11 > n || q[pos] != 0 || Be16(q + pos + 1) != kTypeOpt || q[pos + 6] != 0) return 0;
    size_t offered = Be16(q + pos + 3);
    size_t rdlen = Be16(q + pos + 9);
    pos += 11 + rdlen;
    edns = true;
    limit = std::max<size_t>(512, std::min(offered, kOurUdpSize));
  }
  if (pos != n) return 0;
  if (!ClientAllowed(from)) return 0;  // JS refuses it, and counts it
  auto it = table_.find(key);
  if (it == table_.end()) return 0;
  const std::vector<std::string>& rrs = it->second;
  size_t total = questionEnd + (edns ? 11 : 0);
  for (const std::string& rr : rrs) total += 2 + rr.size();
  if (total > limit || total > cap) return 0;  // JS answers with TC set

  out[0] = q[0];
  out[1] = q[1];
  out[2] = static_cast<uint8_t>(0x80 | 0x04 | (q[2] & 0x01));  // QR, AA, RD as asked
  out[3] = 0x80;                                                // RA, NOERROR
  out[4] = 0;
  out[5] = 1;
  out[6] = static_cast<uint8_t>(rrs.size() >> 8);
  out[7] = static_cast<uint8_t>(rrs.size());
  out[8] = out[9] = 0;
  out[10] = 0;
  out[11] = edns ? 1 : 0;
  std::memcpy(out + 12, q + 12, questionEnd - 12);  // the question as asked, case included
  size_t w = questionEnd;
  // Round-robin: the records in a fresh random order per query (Fisher-Yates), as the JS path
  // and Docker's resolver shuffle. At most ~75 fit in 1232 bytes, checked above.
  uint16_t order[kOurUdpSize / 12];
  const size_t count = rrs.size();
  for (size_t i = 0; i < count; i++) order[i] = static_cast<uint16_t>(i);
  for (size_t i = count; i > 1; i--) std::swap(order[i - 1], order[NextRandom() % i]);
  for (size_t i = 0; i < count; i++) {
    const std::string& rr = rrs[order[i]];
    out[w++] = 0xc0;  // owner: a pointer to the question's name at offset 12
    out[w++] = 12;
    std::memcpy(out + w, rr.data(), rr.size());
    w += rr.size();
  }
  if (edns) {
    const uint8_t opt[11] = {0, 0, kTypeOpt, static_cast<uint8_t>(kOurUdpSize >> 8), static_cast<uint8_t>(kOurUdpSize & 0xff), 0, 0, 0, 0, 0, 0};
    std::memcpy(out + w, opt, sizeof(opt));
    w += sizeof(opt);
  }
  return w;
}

void UdpResponder::Loop() {
  // Left uninitialised on purpose: the kernel touches only the pages a batch fills, so an idle
  // listener (one per network and address) costs next to no resident memory.
  std::unique_ptr<uint8_t[]> inBufs(new uint8_t[kBatch * kMaxDatagram]);
  std::unique_ptr<uint8_t[]> outBufs(new uint8_t[kBatch * kOurUdpSize]);
  mmsghdr inMsgs[kBatch], outMsgs[kBatch];
  iovec inIov[kBatch], outIov[kBatch];
  sockaddr_storage from[kBatch];
  bool done[kBatch];
  auto deliver = [](Napi::Env env, Napi::Function fn, Query* q) {
    if (env != nullptr && fn != nullptr) {
      fn.Call({Napi::Buffer<uint8_t>::Copy(env, q->bytes.data(), q->bytes.size()), Napi::String::New(env, q->address),
               Napi::Number::New(env, q->port)});
    }
    delete q;
  };
  const int fd = reader_.fd();
  while (reader_.WaitReadable()) {
    for (;;) {
      for (size_t i = 0; i < kBatch; i++) {
        inIov[i] = {inBufs.get() + i * kMaxDatagram, kMaxDatagram};
        std::memset(&inMsgs[i], 0, sizeof(mmsghdr));
        inMsgs[i].msg_hdr.msg_iov = &inIov[i];
        inMsgs[i].msg_hdr.msg_iovlen = 1;
        inMsgs[i].msg_hdr.msg_name = &from[i];
        inMsgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      }
      int got = recvmmsg(fd, inMsgs, kBatch, MSG_DONTWAIT, nullptr);
      if (got < 0) {
        if (errno == EINTR) continue;
        break;  // EAGAIN: drained
      }
      size_t replies = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (int i = 0; i < got; i++) {
          done[i] = (inMsgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
          if (done[i]) {
            dropped_++;
            continue;
          }
          uint8_t* out = outBufs.get() + replies * kOurUdpSize;
          size_t len = Answer(static_cast<uint8_t*>(inIov[i].iov_base), inMsgs[i].msg_len, from[i], out, kOurUdpSize);
          if (len == 0) continue;
          outIov[replies] = {out, len};
          std::memset(&outMsgs[replies], 0, sizeof(mmsghdr));
          outMsgs[replies].msg_hdr.msg_iov = &outIov[replies];
          outMsgs[replies].msg_hdr.msg_iovlen = 1;
          outMsgs[replies].msg_hdr.msg_name = &from[i];
          outMsgs[replies].msg_hdr.msg_namelen = inMsgs[i].msg_hdr.msg_namelen;
          done[i] = true;  // answered: not for JS
          replies++;
        }
      }
      for (size_t sent = 0; sent < replies;) {
        int s = sendmmsg(fd, outMsgs + sent, static_cast<unsigned>(replies - sent), 0);
        if (s <= 0) break;  // a reply lost is a query the client retries, as with any UDP loss
        sent += static_cast<size_t>(s);
      }
      answered_ += replies;
      for (int i = 0; i < got; i++) {
        if (done[i]) continue;
        char text[INET6_ADDRSTRLEN] = {0};
        uint16_t port;
        if (from[i].ss_family == AF_INET) {
          auto& a = reinterpret_cast<sockaddr_in&>(from[i]);
          inet_ntop(AF_INET, &a.sin_addr, text, sizeof(text));
          port = ntohs(a.sin_port);
        } else {
          auto& a = reinterpret_cast<sockaddr_in6&>(from[i]);
          inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof(text));
          port = ntohs(a.sin6_port);
        }
        const uint8_t* b = static_cast<uint8_t*>(inIov[i].iov_base);
        auto* item = new Query{std::vector<uint8_t>(b, b + inMsgs[i].msg_len), text, port};
        napi_status st = reader_.tsfn().NonBlockingCall(item, deliver);
        if (st != napi_ok) {
          delete item;
          if (st == napi_queue_full) dropped_++;
          else return;  // closing
        } else {
          handedOver_++;
        }
      }
      if (static_cast<size_t>(got) < kBatch) break;
    }
  }
}

Napi::Value UdpResponder::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (reader_.fd() < 0) return env.Undefined();
  if (!info[0].IsBuffer() || !info[1].IsString() || !info[2].IsNumber()) throw Napi::TypeError::New(env, "send(buf, address, port)");
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  sockaddr_storage to;
  socklen_t len;
  uint32_t port = info[2].As<Napi::Number>().Uint32Value();
  if (port > 65535 || !ParseAddress(info[1].As<Napi::String>().Utf8Value(), static_cast<uint16_t>(port), &to, &len))
    throw Napi::TypeError::New(env, "not an IP address and port");
  // Best effort, as dgram's send: a full socket buffer loses the reply and the client retries.
  (void)sendto(reader_.fd(), buf.Data(), buf.Length(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), len);
  return env.Undefined();
}

Napi::Value UdpResponder::SetAnswer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer() || !info[1].IsArray()) throw Napi::TypeError::New(env, "setAnswer(key: Buffer, records: Buffer[])");
  auto k = info[0].As<Napi::Buffer<char>>();
  std::string key(k.Data(), k.Length());
  auto arr = info[1].As<Napi::Array>();
  std::vector<std::string> rrs;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsBuffer()) throw Napi::TypeError::New(env, "records must be Buffers");
    auto b = v.As<Napi::Buffer<char>>();
    rrs.emplace_back(b.Data(), b.Length());
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (rrs.empty()) table_.erase(key);
  else table_[key] = std::move(rrs);
  return env.Undefined();
}

Napi::Value UdpResponder::SetClients(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "setClients([{ address: Buffer, bits: number }])");
  auto arr = info[0].As<Napi::Array>();
  std::vector<Prefix> next;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Object o = arr.Get(i).As<Napi::Object>();
    auto a = o.Get("address").As<Napi::Buffer<uint8_t>>();
    int bits = o.Get("bits").As<Napi::Number>().Int32Value();
    if ((a.Length() != 4 && a.Length() != 16) || bits < 0 || bits > static_cast<int>(a.Length()) * 8)
      throw Napi::TypeError::New(env, "a prefix is a 4- or 16-byte address and a length that fits it");
    Prefix p{a.Length() == 4 ? AF_INET : AF_INET6, {0}, bits};
    std::memcpy(p.bytes, a.Data(), a.Length());
    next.push_back(p);
  }
  std::lock_guard<std::mutex> lock(mu_);
  clients_ = std::move(next);
  return env.Undefined();
}

Napi::Value UdpResponder::Stats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("answered", static_cast<double>(answered_.load()));
  o.Set("handedOver", static_cast<double>(handedOver_.load()));
  o.Set("dropped", static_cast<double>(dropped_.load()));
  return o;
}

Napi::Value UdpResponder::LocalPort(const Napi::CallbackInfo& info) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (reader_.fd() < 0 || getsockname(reader_.fd(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return info.Env().Null();
  uint16_t port = ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in&>(ss).sin_port : reinterpret_cast<sockaddr_in6&>(ss).sin6_port;
  return Napi::Number::New(info.Env(), ntohs(port));
}

Napi::Value UdpResponder::Close(const Napi::CallbackInfo& info) {
  reader_.Stop();
  return info.Env().Undefined();
}

}  // namespace tsnet
