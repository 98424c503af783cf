#include "port_relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <chrono>
#include <vector>

#include "js_error.h"

namespace tsnet {

namespace {

// What an epoll entry points at.
struct Watch {
  enum Kind { kListener, kClient, kUpstream, kWake, kUdpListener, kUdpFlow } kind;
  void* obj;
};

struct Conn;
struct Flow;

}  // namespace

struct RelayListener {
  bool udp = false;
  int fd = -1;
  sockaddr_storage target{};
  socklen_t targetLen = 0;
  Watch watch{Watch::kListener, this};
  std::unordered_set<Conn*> conns;                // TCP; the relay thread's alone
  std::unordered_map<std::string, Flow*> flows;   // UDP, by client address; the relay thread's alone
  std::atomic<uint64_t> accepted{0};  // connections (TCP) or client flows (UDP) since it opened
  std::atomic<uint64_t> active{0};
};

namespace {

constexpr int kPipeSize = 1 << 20;  // fewer, larger splices; the kernel caps it at pipe-max-size

// One direction of a connection: src → pipe → dst.
struct Direction {
  int pipeR = -1;
  int pipeW = -1;
  size_t inPipe = 0;
  bool eof = false;   // src sent FIN
  bool shut = false;  // FIN passed on to dst
  bool done() const { return shut && inPipe == 0; }
};

struct Conn {
  RelayListener* listener;
  bool dead = false;  // destroyed; freed at the end of the current epoll batch
  int client = -1;
  int upstream = -1;
  bool connected = false;
  Direction up;    // client → upstream
  Direction down;  // upstream → client
  Watch clientWatch{Watch::kClient, this};
  Watch upstreamWatch{Watch::kUpstream, this};
};

// One UDP client of a relayed port: its own socket connected to the container, so replies come
// back on it and go out from the listening socket to that client (as docker-proxy's UDP proxy).
struct Flow {
  RelayListener* listener;
  bool dead = false;
  int upstream = -1;
  sockaddr_storage client{};
  socklen_t clientLen = 0;
  std::string key;
  std::chrono::steady_clock::time_point lastSeen;
  Watch watch{Watch::kUdpFlow, this};
};

constexpr auto kUdpIdle = std::chrono::seconds(90);  // docker-proxy's UDP connection timeout
constexpr size_t kUdpMaxFlows = 4096;                 // per port; datagrams of more clients are dropped

bool ParseAddr(const std::string& ip, uint32_t port, sockaddr_storage* addr, socklen_t* len) {
  std::memset(addr, 0, sizeof(*addr));
  auto* v4 = reinterpret_cast<sockaddr_in*>(addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(addr);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(*v4);
    return true;
  }
  if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(*v6);
    return true;
  }
  return false;
}

bool OpenPipe(Direction* d) {
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return false;
  d->pipeR = p[0];
  d->pipeW = p[1];
  fcntl(d->pipeW, F_SETPIPE_SZ, kPipeSize);  // best effort: the default 64 KiB works too
  return true;
}

void ClosePipe(Direction* d) {
  if (d->pipeR >= 0) close(d->pipeR);
  if (d->pipeW >= 0) close(d->pipeW);
  d->pipeR = d->pipeW = -1;
}

// Moves what src has to dst until one side would block. False on an error of either socket.
bool Pump(Direction* d, int src, int dst) {
  for (;;) {
    if (d->inPipe > 0) {
      ssize_t n = splice(d->pipeR, nullptr, dst, nullptr, d->inPipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d->inPipe -= static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && errno == EAGAIN;  // dst is full: its EPOLLOUT brings us back
    }
    if (d->eof) {
      if (!d->shut) {
        shutdown(dst, SHUT_WR);
        d->shut = true;
      }
      return true;
    }
    ssize_t n = splice(src, nullptr, d->pipeW, nullptr, kPipeSize, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d->inPipe += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      d->eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN;  // the pipe is empty here, so src has nothing more for now
  }
}

class Engine {
 public:
  static Engine& Get() {
    // Never destroyed: the thread outlives every relay and ends with the process.
    static Engine* engine = new Engine();
    return *engine;
  }

  bool Add(RelayListener* l) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (l->udp) l->watch.kind = Watch::kUdpListener;
    ev.data.ptr = &l->watch;
    return epoll_ctl(epfd_, EPOLL_CTL_ADD, l->fd, &ev) == 0;
  }

  // Closes the listener and its connections on the relay thread; returns when that is done.
  void Remove(RelayListener* l) {
    std::promise<void> done;
    std::future<void> f = done.get_future();
    {
      std::lock_guard<std::mutex> g(mu_);
      removals_.push_back({l, &done});
    }
    uint64_t one = 1;
    ssize_t w = write(wakefd_, &one, sizeof(one));
    (void)w;
    f.wait();
  }

 private:
  struct Removal {
    RelayListener* listener;
    std::promise<void>* done;
  };

  Engine() {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &wake_;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev);
    std::thread([this] { Loop(); }).detach();
  }

  void Loop() {
    epoll_event events[128];
    for (;;) {
      // With UDP flows about, wake now and then to end the idle ones.
      int n = epoll_wait(epfd_, events, 128, !paused_.empty() ? 200 : flows_.empty() ? -1 : 5000);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      // Removals first: a connection in this batch may belong to a listener going away. What is
      // closed is freed only after the batch, so a later event of it still reads valid memory.
      for (int i = 0; i < n; i++) {
        if (static_cast<Watch*>(events[i].data.ptr)->kind == Watch::kWake) DoRemovals();
      }
      for (int i = 0; i < n; i++) {
        auto* w = static_cast<Watch*>(events[i].data.ptr);
        if (w->kind == Watch::kListener) {
          auto* l = static_cast<RelayListener*>(w->obj);
          if (l->fd >= 0) Accept(l);
        } else if (w->kind == Watch::kUdpListener) {
          auto* l = static_cast<RelayListener*>(w->obj);
          if (l->fd >= 0) FromClients(l);
        } else if (w->kind == Watch::kUdpFlow) {
          auto* f = static_cast<Flow*>(w->obj);
          if (!f->dead) FromContainer(f);
        } else if (w->kind != Watch::kWake) {
          auto* c = static_cast<Conn*>(w->obj);
          if (!c->dead) Service(c, w->kind == Watch::kUpstream ? events[i].events : 0);
        }
      }
      if (!flows_.empty()) ExpireFlows();
      if (!paused_.empty()) Resume();
      for (Conn* c : deadConns_) delete c;
      deadConns_.clear();
      for (Flow* f : deadFlows_) delete f;
      deadFlows_.clear();
      for (RelayListener* l : deadListeners_) delete l;
      deadListeners_.clear();
    }
  }

  void DoRemovals() {
    uint64_t v;
    while (read(wakefd_, &v, sizeof(v)) > 0) {
    }
    std::vector<Removal> todo;
    {
      std::lock_guard<std::mutex> g(mu_);
      todo.swap(removals_);
    }
    for (auto& r : todo) {
      RelayListener* l = r.listener;
      close(l->fd);  // also leaves the epoll set
      l->fd = -1;
      for (Conn* c : std::vector<Conn*>(l->conns.begin(), l->conns.end())) Destroy(c);
      std::vector<Flow*> flows;
      for (auto& kv : l->flows) flows.push_back(kv.second);
      for (Flow* f : flows) EndFlow(f);
      for (auto it = paused_.begin(); it != paused_.end();) it = it->listener == l ? paused_.erase(it) : it + 1;
      deadListeners_.push_back(l);
      r.done->set_value();
    }
  }

  void Accept(RelayListener* l) {
    for (;;) {
      int client = accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (client < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN) Pause(l);  // out of fds or memory: the listener would wake us at once, forever
        return;  // the backlog keeps the rest for the next round
      }
      l->accepted++;
      auto* c = new Conn();
      c->listener = l;
      c->client = client;
      c->upstream = socket(l->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      bool ok = c->upstream >= 0 && OpenPipe(&c->up) && OpenPipe(&c->down);
      if (ok) {
        setsockopt(c->upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int r = connect(c->upstream, reinterpret_cast<sockaddr*>(&l->target), l->targetLen);
        ok = r == 0 || errno == EINPROGRESS;
        c->connected = r == 0;
      }
      if (ok) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = &c->clientWatch;
        ok = epoll_ctl(epfd_, EPOLL_CTL_ADD, client, &ev) == 0;
        ev.data.ptr = &c->upstreamWatch;
        ok = ok && epoll_ctl(epfd_, EPOLL_CTL_ADD, c->upstream, &ev) == 0;
      }
      l->conns.insert(c);
      l->active++;
      if (!ok) {
        Destroy(c);
        continue;
      }
      if (c->connected) Service(c, 0);
    }
  }

  // Runs both directions after any event of either socket (edge-triggered: each pump goes on
  // until a side would block, so no readiness is left unused).
  void Service(Conn* c, uint32_t upstreamEvents) {
    if (!c->connected) {
      if (!(upstreamEvents & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(c->upstream, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        Destroy(c);  // the container refused or is unreachable: the client's connection ends
        return;
      }
      c->connected = true;
    }
    if (!Pump(&c->up, c->client, c->upstream) || !Pump(&c->down, c->upstream, c->client)) {
      Destroy(c);
      return;
    }
    if (c->up.done() && c->down.done()) Destroy(c);
  }

  // Stops waking for a listener for a second (accept keeps failing for want of fds or memory).
  void Pause(RelayListener* l) {
    epoll_event ev{};
    ev.events = 0;
    ev.data.ptr = &l->watch;
    if (epoll_ctl(epfd_, EPOLL_CTL_MOD, l->fd, &ev) == 0) paused_.push_back({l, std::chrono::steady_clock::now() + std::chrono::seconds(1)});
  }

  void Resume() {
    auto now = std::chrono::steady_clock::now();
    std::vector<Paused> still;
    for (auto& p : paused_) {
      if (p.until > now) {
        still.push_back(p);
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = &p.listener->watch;
      epoll_ctl(epfd_, EPOLL_CTL_MOD, p.listener->fd, &ev);
    }
    paused_.swap(still);
  }

  // Datagrams from clients: each to the container through the client's own flow.
  void FromClients(RelayListener* l) {
    uint8_t buf[65536];
    auto now = std::chrono::steady_clock::now();
    for (;;) {
      sockaddr_storage from{};
      socklen_t fromLen = sizeof(from);
      ssize_t n = recvfrom(l->fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &fromLen);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;  // EAGAIN
      }
      std::string key(reinterpret_cast<const char*>(&from), fromLen);
      Flow* f;
      auto it = l->flows.find(key);
      if (it != l->flows.end()) {
        f = it->second;
      } else {
        if (l->flows.size() >= kUdpMaxFlows) continue;
        f = OpenFlow(l, from, fromLen, key);
        if (!f) continue;
      }
      f->lastSeen = now;
      ssize_t w = send(f->upstream, buf, static_cast<size_t>(n), 0);
      (void)w;  // a full socket buffer drops the datagram, as the network would
    }
  }

  Flow* OpenFlow(RelayListener* l, const sockaddr_storage& from, socklen_t fromLen, const std::string& key) {
    int fd = socket(l->target.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    if (connect(fd, reinterpret_cast<const sockaddr*>(&l->target), l->targetLen) != 0) {
      close(fd);
      return nullptr;
    }
    auto* f = new Flow();
    f->listener = l;
    f->upstream = fd;
    f->client = from;
    f->clientLen = fromLen;
    f->key = key;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &f->watch;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      delete f;
      return nullptr;
    }
    l->flows.emplace(key, f);
    l->accepted++;
    l->active++;
    flows_.insert(f);
    return f;
  }

  // Datagrams from the container: back to the flow's client, from the listening socket.
  void FromContainer(Flow* f) {
    uint8_t buf[65536];
    for (int errors = 0;;) {
      ssize_t n = recv(f->upstream, buf, sizeof(buf), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        // ECONNREFUSED from an ICMP error (nothing listens yet) is reported once: keep the flow.
        // Anything that keeps failing ends the round rather than spinning.
        if (++errors > 8) return;
        continue;
      }
      f->lastSeen = std::chrono::steady_clock::now();
      ssize_t w = sendto(f->listener->fd, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&f->client), f->clientLen);
      (void)w;
    }
  }

  void ExpireFlows() {
    auto now = std::chrono::steady_clock::now();
    if (now - lastExpiry_ < std::chrono::seconds(5)) return;
    lastExpiry_ = now;
    std::vector<Flow*> idle;
    for (Flow* f : flows_) {
      if (now - f->lastSeen > kUdpIdle) idle.push_back(f);
    }
    for (Flow* f : idle) EndFlow(f);
  }

  void EndFlow(Flow* f) {
    close(f->upstream);  // also leaves the epoll set
    f->listener->flows.erase(f->key);
    f->listener->active--;
    f->dead = true;
    flows_.erase(f);
    deadFlows_.push_back(f);
  }

 private:
  void Destroy(Conn* c) {
    // Closing removes the sockets from the epoll set.
    if (c->client >= 0) close(c->client);
    if (c->upstream >= 0) close(c->upstream);
    ClosePipe(&c->up);
    ClosePipe(&c->down);
    c->listener->conns.erase(c);
    c->listener->active--;
    c->dead = true;
    deadConns_.push_back(c);
  }

  int epfd_ = -1;
  int wakefd_ = -1;
  Watch wake_{Watch::kWake, nullptr};
  std::mutex mu_;
  std::vector<Removal> removals_;  // guarded by mu_
  std::vector<Conn*> deadConns_;
  std::vector<Flow*> deadFlows_;
  std::vector<RelayListener*> deadListeners_;
  std::unordered_set<Flow*> flows_;  // every live UDP flow, for the idle sweep
  struct Paused {
    RelayListener* listener;
    std::chrono::steady_clock::time_point until;
  };
  std::vector<Paused> paused_;
  std::chrono::steady_clock::time_point lastExpiry_{};
};

}  // namespace

Napi::Function PortRelay::Define(Napi::Env env) {
  return DefineClass(env, "PortRelay",
                     {
                         InstanceMethod<&PortRelay::Close>("close"),
                         InstanceMethod<&PortRelay::Stats>("stats"),
                     });
}

PortRelay::PortRelay(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PortRelay>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsNumber() || !info[2].IsString() || !info[3].IsNumber() || !info[4].IsString()) {
    throw Napi::TypeError::New(env, "new PortRelay(listenIp, port, targetIp, targetPort, proto)");
  }
  std::string proto = info[4].As<Napi::String>().Utf8Value();
  if (proto != "tcp" && proto != "udp") throw Napi::TypeError::New(env, "proto must be tcp or udp");
  bool udp = proto == "udp";
  uint32_t port = info[1].As<Napi::Number>().Uint32Value();
  uint32_t targetPort = info[3].As<Napi::Number>().Uint32Value();
  if (port == 0 || port > 65535 || targetPort == 0 || targetPort > 65535) throw Napi::TypeError::New(env, "ports must be 1..65535");
  sockaddr_storage addr;
  socklen_t len;
  auto l = std::make_unique<RelayListener>();
  if (!ParseAddr(info[0].As<Napi::String>().Utf8Value(), port, &addr, &len) ||
      !ParseAddr(info[2].As<Napi::String>().Utf8Value(), targetPort, &l->target, &l->targetLen)) {
    throw Napi::TypeError::New(env, "not an IP address");
  }
  l->udp = udp;
  int fd = socket(addr.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ToJsError(env, SysError{errno, "socket"});
  auto fail = [&](const char* call) {
    SysError e{errno, call};
    close(fd);
    throw ToJsError(env, e);
  };
  int one = 1;
  // TCP: SO_REUSEADDR as every listening server has it, so a restarted daemon listens again
  // while the last relayed connections sit in TIME_WAIT (a socket bound by another program still
  // refuses us). Never for UDP, where it would let two sockets share the port.
  if (!udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) fail("setsockopt");
  // "::" takes the IPv6 port only; 0.0.0.0 has its own socket, as Docker does.
  if (addr.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) fail("setsockopt");
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) fail("bind");
  if (!udp && listen(fd, 511) != 0) fail("listen");
  l->fd = fd;
  if (!Engine::Get().Add(l.get())) fail("epoll_ctl");
  listener_ = l.release();
}

PortRelay::~PortRelay() { Shut(); }

void PortRelay::Shut() {
  if (!listener_) return;
  Engine::Get().Remove(listener_);  // the relay thread frees it
  listener_ = nullptr;
}

Napi::Value PortRelay::Close(const Napi::CallbackInfo& info) {
  Shut();
  return info.Env().Undefined();
}

Napi::Value PortRelay::Stats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("active", static_cast<double>(listener_ ? listener_->active.load() : 0));
  o.Set("accepted", static_cast<double>(listener_ ? listener_->accepted.load() : 0));
  return o;
}

}  // namespace tsnet
