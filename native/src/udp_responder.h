// A UDP socket whose datagrams are read by a dedicated thread that answers the ones it can from a
// table of ready-made answers (the resolver's own names) and hands every other datagram to
// JavaScript. Why: a DNS reply through Node's dgram costs a libuv round trip, a Buffer and a
// sendmsg per packet on the one JS thread, which capped the resolver near 21k queries/s; here a
// batch of queries costs one recvmmsg and one sendmmsg, off the JS thread.
//
// The table is keyed by the question as it is on the wire (lower-cased name, then type); values are
// resource records without their owner name (they point back at the question). Anything the table
// cannot answer exactly (unknown name, other class, opcode, more than one question, EDNS version,
// an answer that would not fit the client's UDP size, a client outside the allowed prefixes) goes
// to JavaScript unchanged, so every rule of the resolver stays in one place.
#pragma once
#include <napi.h>
#include <netinet/in.h>

#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "socket_reader.h"

namespace tsnet {

class UdpResponder : public Napi::ObjectWrap<UdpResponder> {
 public:
  static Napi::Function Define(Napi::Env env);
  // new UdpResponder(address: string, port: number, onQuery: (msg, address, port) => void)
  explicit UdpResponder(const Napi::CallbackInfo& info);
  ~UdpResponder() override;

  struct Prefix {
    int family;
    uint8_t bytes[16];
    int bits;
  };

 private:
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value SetAnswer(const Napi::CallbackInfo& info);
  Napi::Value SetClients(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value LocalPort(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Loop();
  // Writes the reply to `query` into `out` and returns its length, or 0 when JS must decide.
  size_t Answer(const uint8_t* query, size_t len, const sockaddr_storage& from, uint8_t* out, size_t cap);
  bool ClientAllowed(const sockaddr_storage& from) const;

  SocketReader reader_;

  std::mutex mu_;  // guards table_ and clients_: written by JS, read by the reader per batch
  std::unordered_map<std::string, std::vector<std::string>> table_;
  std::vector<Prefix> clients_;

  std::atomic<uint64_t> answered_{0};
  std::atomic<uint64_t> handedOver_{0};
  std::atomic<uint64_t> dropped_{0};  // JS was too far behind: the queue to it was full
};

}  // namespace tsnet
