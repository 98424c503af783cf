#include "tcp_relay.h"

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
#include <unordered_set>
#include <vector>

#include "js_error.h"

namespace tsnet {

namespace {

// What an epoll entry points at.
struct Watch {
  enum Kind { kListener, kClient, kUpstream, kWake } kind;
  void* obj;
};

struct Conn;

}  // namespace

struct RelayListener {
  int fd = -1;
  sockaddr_storage target{};
  socklen_t targetLen = 0;
  Watch watch{Watch::kListener, this};
  std::unordered_set<Conn*> conns;  // the relay thread's alone
  std::atomic<uint64_t> accepted{0};
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
      int n = epoll_wait(epfd_, events, 128, -1);
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
        } else if (w->kind != Watch::kWake) {
          auto* c = static_cast<Conn*>(w->obj);
          if (!c->dead) Service(c, w->kind == Watch::kUpstream ? events[i].events : 0);
        }
      }
      for (Conn* c : deadConns_) delete c;
      deadConns_.clear();
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
      deadListeners_.push_back(l);
      r.done->set_value();
    }
  }

  void Accept(RelayListener* l) {
    for (;;) {
      int client = accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (client < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // EAGAIN, or out of fds: the backlog keeps the rest for the next round
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
  std::vector<RelayListener*> deadListeners_;
};

}  // namespace

Napi::Function TcpRelay::Define(Napi::Env env) {
  return DefineClass(env, "TcpRelay",
                     {
                         InstanceMethod<&TcpRelay::Close>("close"),
                         InstanceMethod<&TcpRelay::Stats>("stats"),
                     });
}

TcpRelay::TcpRelay(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TcpRelay>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsNumber() || !info[2].IsString() || !info[3].IsNumber()) {
    throw Napi::TypeError::New(env, "new TcpRelay(listenIp, port, targetIp, targetPort)");
  }
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
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ToJsError(env, SysError{errno, "socket"});
  auto fail = [&](const char* call) {
    SysError e{errno, call};
    close(fd);
    throw ToJsError(env, e);
  };
  int one = 1;
  // SO_REUSEADDR as every listening server has it: a restarted daemon listens again while the
  // last relayed connections sit in TIME_WAIT. A socket bound by another program still refuses us.
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) fail("setsockopt");
  // "::" takes the IPv6 port only; 0.0.0.0 has its own socket, as Docker does.
  if (addr.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) fail("setsockopt");
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) fail("bind");
  if (listen(fd, 511) != 0) fail("listen");
  l->fd = fd;
  if (!Engine::Get().Add(l.get())) fail("epoll_ctl");
  listener_ = l.release();
}

TcpRelay::~TcpRelay() { Shut(); }

void TcpRelay::Shut() {
  if (!listener_) return;
  Engine::Get().Remove(listener_);  // the relay thread frees it
  listener_ = nullptr;
}

Napi::Value TcpRelay::Close(const Napi::CallbackInfo& info) {
  Shut();
  return info.Env().Undefined();
}

Napi::Value TcpRelay::Stats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("active", static_cast<double>(listener_ ? listener_->active.load() : 0));
  o.Set("accepted", static_cast<double>(listener_ ? listener_->accepted.load() : 0));
  return o;
}

}  // namespace tsnet
