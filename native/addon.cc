// native/addon.cc: the project's only native code (typed face: native/index.ts).
//
// Theory of operation
// - Node's sockets drop SCM_RIGHTS fds and Node cannot mmap, so this addon owns the vfio-user
//   socket fds. Every fd it creates is O_NONBLOCK|O_CLOEXEC; received fds arrive with
//   MSG_CMSG_CLOEXEC. Calls never block: EAGAIN is a return value (null / -1 / false), EINTR is
//   retried, every other failure throws an Error carrying `code` ("EPIPE"), `errno` (positive)
//   and `syscall`. Bad arguments throw TypeError/RangeError (ERR_INVALID_ARG_TYPE/ERR_OUT_OF_RANGE).
// - Mappings: mmap returns an external ArrayBuffer over a MAP_SHARED mapping. A process-wide
//   registry (mutex-guarded: worker threads share this library) keys every live mapping by a
//   never-reused id, which is also the ArrayBuffer's finalize hint, and indexes it by address so
//   `unmap(ab)` can find it. Whoever removes the entry from the registry (unmap, the GC finalizer,
//   or a failed ArrayBuffer creation) is the one that munmaps; everyone else finds nothing and does
//   nothing, so a mapping is unmapped exactly once and nothing is freed twice. unmap detaches the
//   buffer before munmap, so stale views read as empty (length 0) instead of faulting.
// - Poller: one uv_poll_t on Node's loop per watched fd. The handle lives in its own heap block
//   (PollHandle) that outlives the JS object until libuv's close callback frees it; its `owner`
//   back-pointer is cleared when the Poller closes, so a late event is ignored. While started the
//   JS object holds a strong reference to itself (Ref), so it cannot be collected with a live
//   watcher. The JS callback runs through napi_make_callback (microtasks and nextTicks run after
//   it); an exception it throws is handed to napi_fatal_exception, i.e. process 'uncaughtException',
//   instead of escaping into libuv (which would abort).
// - libuv allows one active watcher per fd and aborts if an fd is closed under an active watcher
//   and then re-armed, so the addon keeps a per-environment set of open Pollers: starting a second
//   Poller on an fd that already has a started one is refused (EEXIST), and `close(fd)` first
//   stops any Poller on that fd. An environment cleanup hook closes every handle still open when a
//   worker or the process shuts down, and the library marks itself RTLD_NODELETE so the close
//   callbacks libuv runs after a worker has unloaded its addons still find their code.
#include <napi.h>
#include <uv.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace {

constexpr double kMaxMapLength = 1024.0 * 1024.0 * 1024.0;  // MAX_MAP_LENGTH in index.ts
constexpr double kMaxSafeInteger = 9007199254740991.0;       // Number.MAX_SAFE_INTEGER
constexpr int kMaxFds = 253;                                 // the kernel's SCM_MAX_FD

// ---------------------------------------------------------------------------------------------
// Errors

std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);  // glibc >= 2.32
  return name != nullptr ? std::string(name) : "E" + std::to_string(err);
}

// An Error shaped like Node's system errors, but with a positive `errno`.
// The message is "<syscall>: <strerror>", or "<syscall>: <detail>" when a detail is given.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail = "") {
  std::string message = std::string(syscall) + ": " + (detail.empty() ? std::strerror(err) : detail);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

// libuv reports negative errno values; its names are the errno names.
Napi::Error UvError(Napi::Env env, int uvErr, const char* call) {
  std::string message = std::string(call) + ": " + uv_strerror(uvErr);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, uv_err_name(uvErr)));
  error.Set("errno", Napi::Number::New(env, -uvErr));
  error.Set("syscall", Napi::String::New(env, call));
  return error;
}

[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw error;
}

[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message) {
  Napi::RangeError error = Napi::RangeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw error;
}

// ---------------------------------------------------------------------------------------------
// Arguments

std::string FormatNumber(double v) {
  char text[32];
  snprintf(text, sizeof(text), "%.17g", v);
  return text;
}

double ArgInteger(const Napi::CallbackInfo& info, size_t i, const char* name, double min, double max) {
  Napi::Env env = info.Env();
  if (!info[i].IsNumber()) ThrowTypeError(env, std::string("\"") + name + "\" must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v) || std::trunc(v) != v || v < min || v > max) {
    ThrowRangeError(env, std::string("\"") + name + "\" must be an integer in " + std::to_string(int64_t(min)) +
                             ".." + std::to_string(int64_t(max)));
  }
  return v;
}

int ArgFd(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<int>(ArgInteger(info, i, "fd", 0, INT32_MAX));
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBoolean()) ThrowTypeError(info.Env(), std::string("\"") + name + "\" must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

// A string handed to the kernel as a C string: embedded NULs would silently cut it short.
std::string ArgCString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) ThrowTypeError(info.Env(), std::string("\"") + name + "\" must be a string");
  std::string s = info[i].As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) {
    ThrowTypeError(info.Env(), std::string("\"") + name + "\" must not contain NUL characters");
  }
  return s;
}

// buf[offset, offset+length) of any TypedArray (offset and length in bytes).
uint8_t* ArgBytes(const Napi::CallbackInfo& info, size_t bufIndex, size_t* lengthOut) {
  Napi::Env env = info.Env();
  if (!info[bufIndex].IsTypedArray()) ThrowTypeError(env, "\"buf\" must be a Uint8Array");
  Napi::TypedArray ta = info[bufIndex].As<Napi::TypedArray>();
  napi_typedarray_type type;
  size_t elements = 0;
  void* data = nullptr;
  napi_value arrayBuffer;
  size_t byteOffset = 0;
  NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, ta, &type, &elements, &data, &arrayBuffer, &byteOffset),
                       nullptr);
  double byteLength = static_cast<double>(ta.ByteLength());
  double offset = ArgInteger(info, bufIndex + 1, "offset", 0, byteLength);
  double length = ArgInteger(info, bufIndex + 2, "length", 0, byteLength - offset);
  *lengthOut = static_cast<size_t>(length);
  return static_cast<uint8_t*>(data) + static_cast<size_t>(offset);
}

// ---------------------------------------------------------------------------------------------
// Per-environment state: the open Pollers (see the theory of operation).

class Poller;

struct AddonState {
  std::unordered_set<Poller*> pollers;
};

AddonState* State(Napi::Env env) { return env.GetInstanceData<AddonState>(); }

// ---------------------------------------------------------------------------------------------
// Sockets

// Fill `addr` for a UNIX socket path; a path too long for sun_path is ENAMETOOLONG, reported
// against `syscall`. Returns the address length to pass to bind/connect.
socklen_t UnixAddress(Napi::Env env, const std::string& path, const char* syscall, sockaddr_un* addr) {
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr->sun_path)) {
    throw ErrnoError(env, ENAMETOOLONG, syscall,
                     "socket path is " + std::to_string(path.size()) + " bytes; at most " +
                         std::to_string(sizeof(addr->sun_path) - 1) + " fit in sun_path");
  }
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
}

Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgCString(info, 0, "path");
  int backlog = static_cast<int>(ArgInteger(info, 1, "backlog", 0, INT32_MAX));
  mode_t mode = static_cast<mode_t>(ArgInteger(info, 2, "mode", 0, 07777));

  sockaddr_un addr{};
  socklen_t addrLen = UnixAddress(env, path, "bind", &addr);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addrLen) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, err, "bind");
  }
  // The mode is set before listen(): nobody can connect while the file still has umask's mode.
  const char* failed = nullptr;
  if (chmod(path.c_str(), mode) < 0) {
    failed = "chmod";
  } else if (listen(fd, backlog) < 0) {
    failed = "listen";
  }
  if (failed != nullptr) {
    int err = errno;
    close(fd);
    unlink(path.c_str());
    throw ErrnoError(env, err, failed);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  for (;;) {
    int conn = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn >= 0) return Napi::Number::New(env, conn);
    // ECONNABORTED: a client gave up while queued; look at the next one.
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    throw ErrnoError(env, errno, "accept4");
  }
}

Napi::Value ConnectUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgCString(info, 0, "path");
  sockaddr_un addr{};
  socklen_t addrLen = UnixAddress(env, path, "connect", &addr);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  // A non-blocking UNIX stream connect completes at once or fails (EAGAIN: the backlog is full).
  int rc;
  do {
    rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), addrLen);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, err, "connect");
  }
  return Napi::Number::New(env, fd);
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
    throw ErrnoError(env, errno, "socketpair");
  }
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(uint32_t(0), Napi::Number::New(env, sv[0]));
  result.Set(uint32_t(1), Napi::Number::New(env, sv[1]));
  return result;
}

// The process at the other end of a connected UNIX socket, as the kernel recorded it when the
// connection was made (SO_PEERCRED): pid (in our pid namespace; 0 if it is not visible there),
// uid and gid.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) throw ErrnoError(env, errno, "getsockopt");
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, cred.pid));
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  return result;
}

// prctl(PR_SET_PDEATHSIG): the kernel sends `signal` to this process when its parent exits
// (0 clears it). The setting is lost across fork, kept across exec of non-setuid programs.
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sig = static_cast<int>(ArgInteger(info, 0, "signal", 0, 64));
  if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(sig)) < 0) throw ErrnoError(env, errno, "prctl");
  return env.Undefined();
}

// Control-message buffer with room for SCM_MAX_FD fds, aligned for cmsghdr.
union ControlBuffer {
  char bytes[CMSG_SPACE(sizeof(int) * kMaxFds)];
  cmsghdr align;
};

Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  size_t length = 0;
  uint8_t* data = ArgBytes(info, 1, &length);
  int maxFds = static_cast<int>(ArgInteger(info, 4, "maxFds", 0, kMaxFds));
  if (length == 0) ThrowRangeError(env, "\"length\" must be at least 1 (0 bytes read means EOF)");

  ControlBuffer control;
  iovec iov{data, length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.bytes;
  // Even with maxFds 0 there is room for one fd, so a sender's fds always show up as MSG_CTRUNC.
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * (maxFds > 0 ? maxFds : 1));

  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    throw ErrnoError(env, errno, "recvmsg");
  }

  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* p = CMSG_DATA(c);
    for (size_t k = 0; k < count; k++) {
      int received;
      std::memcpy(&received, p + k * sizeof(int), sizeof(int));
      fds.push_back(received);
    }
  }
  bool ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0;
  if (ctrunc || static_cast<int>(fds.size()) > maxFds) {
    // A protocol error for the caller; the fds that did arrive must not leak.
    for (int received : fds) close(received);
    fds.clear();
    ctrunc = true;
  }

  Napi::Object result = Napi::Object::New(env);
  result.Set("bytes", Napi::Number::New(env, static_cast<double>(n)));
  Napi::Array fdArray = Napi::Array::New(env, fds.size());
  for (size_t k = 0; k < fds.size(); k++) fdArray.Set(static_cast<uint32_t>(k), Napi::Number::New(env, fds[k]));
  result.Set("fds", fdArray);
  result.Set("ctrunc", Napi::Boolean::New(env, ctrunc));
  return result;
}

Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  size_t length = 0;
  uint8_t* data = ArgBytes(info, 1, &length);
  if (!info[4].IsArray()) ThrowTypeError(env, "\"fds\" must be an array of fds");
  Napi::Array fdArray = info[4].As<Napi::Array>();
  uint32_t count = fdArray.Length();
  if (count > static_cast<uint32_t>(kMaxFds)) {
    ThrowRangeError(env, "at most " + std::to_string(kMaxFds) + " fds fit in one message");
  }
  if (count > 0 && length == 0) ThrowRangeError(env, "fds need at least one byte of data to travel with");
  std::vector<int> fds(count);
  for (uint32_t k = 0; k < count; k++) {
    Napi::Value v = fdArray.Get(k);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!std::isfinite(d) || std::trunc(d) != d || d < 0 || d > INT32_MAX) {
      ThrowTypeError(env, "\"fds\" must contain only fds (non-negative integers)");
    }
    fds[k] = static_cast<int>(d);
  }

  ControlBuffer control;
  iovec iov{data, length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (count > 0) {
    std::memset(control.bytes, 0, sizeof(control.bytes));
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * count);
  }

  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    throw ErrnoError(env, errno, "sendmsg");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// ---------------------------------------------------------------------------------------------
// Mappings

struct Mapping {
  void* addr;
  size_t length;
};

std::mutex gMappingsMutex;
std::unordered_map<uintptr_t, Mapping> gMappingsById;  // id (= finalize hint) -> mapping
std::unordered_map<void*, uintptr_t> gMappingIdByAddr;  // live mapping address -> id
uintptr_t gNextMappingId = 1;

// Removes the mapping from the registry and munmaps it, if it is still there. Returns whether
// this call did the munmap (every other caller finds the entry gone and does nothing).
bool ReleaseMapping(uintptr_t id) {
  Mapping m;
  {
    std::lock_guard<std::mutex> lock(gMappingsMutex);
    auto it = gMappingsById.find(id);
    if (it == gMappingsById.end()) return false;
    m = it->second;
    gMappingsById.erase(it);
    auto byAddr = gMappingIdByAddr.find(m.addr);
    if (byAddr != gMappingIdByAddr.end() && byAddr->second == id) gMappingIdByAddr.erase(byAddr);
  }
  munmap(m.addr, m.length);
  return true;
}

// The ArrayBuffer's backing store is gone (GC, or after unmap detached it): unmap if still mapped.
void FinalizeMapping(napi_env /*env*/, void* /*data*/, void* hint) {
  ReleaseMapping(reinterpret_cast<uintptr_t>(hint));
}

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  if (!info[1].IsNumber()) ThrowTypeError(env, "\"length\" must be a number");
  double lengthArg = info[1].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(lengthArg) || std::trunc(lengthArg) != lengthArg || lengthArg < 1 ||
      lengthArg > kMaxMapLength) {
    throw ErrnoError(env, EINVAL, "mmap",
                     "length " + FormatNumber(lengthArg) + " is outside 1..MAX_MAP_LENGTH (" +
                         std::to_string(static_cast<int64_t>(kMaxMapLength)) +
                         " bytes); map large areas in windows");
  }
  double offsetArg = ArgInteger(info, 2, "offset", 0, kMaxSafeInteger);
  bool writable = ArgBool(info, 3, "writable");
  size_t length = static_cast<size_t>(lengthArg);
  uint64_t offset = static_cast<uint64_t>(offsetArg);
  uint64_t pageSize = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (offset % pageSize != 0) {
    throw ErrnoError(env, EINVAL, "mmap",
                     "offset " + std::to_string(offset) + " is not a multiple of the page size (" +
                         std::to_string(pageSize) + ")");
  }

  struct stat st;
  if (fstat(fd, &st) < 0) throw ErrnoError(env, errno, "fstat");
  if (!S_ISREG(st.st_mode)) {
    char mode[16];
    snprintf(mode, sizeof(mode), "0%o", static_cast<unsigned>(st.st_mode));
    throw ErrnoError(env, EINVAL, "mmap", std::string("not a mappable file (fd ") + std::to_string(fd) +
                                              " has mode " + mode + "; only regular files, memfds and shm)");
  }
  if (static_cast<uint64_t>(st.st_size) < offset + length) {
    throw ErrnoError(env, EINVAL, "mmap",
                     "file is smaller than offset+length (" + std::to_string(st.st_size) + " < " +
                         std::to_string(offset) + "+" + std::to_string(length) + ")");
  }

  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* addr = ::mmap(nullptr, length, prot, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (addr == MAP_FAILED) throw ErrnoError(env, errno, "mmap");

  uintptr_t id;
  {
    std::lock_guard<std::mutex> lock(gMappingsMutex);
    id = gNextMappingId++;
    gMappingsById[id] = Mapping{addr, length};
    gMappingIdByAddr[addr] = id;
  }
  // Raw N-API rather than Napi::ArrayBuffer::New(..., finalizer): when creation fails, Node may
  // already have called (or may later call) the finalizer, and node-addon-api would then free its
  // finalizer data a second time. With an id as the hint, whichever of us comes first unmaps.
  napi_value arrayBuffer;
  napi_status status =
      napi_create_external_arraybuffer(env, addr, length, FinalizeMapping, reinterpret_cast<void*>(id), &arrayBuffer);
  if (status != napi_ok) {
    ReleaseMapping(id);
    NAPI_THROW_IF_FAILED(env, status, Napi::Value());
  }
  return Napi::Value(env, arrayBuffer);
}

void Unmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) ThrowTypeError(env, "\"buffer\" must be an ArrayBuffer returned by mmap");
  napi_value buffer = info[0];
  bool detached = false;
  NAPI_THROW_IF_FAILED_VOID(env, napi_is_detached_arraybuffer(env, buffer, &detached));
  if (detached) return;  // already unmapped (or transferred away): nothing to do
  void* data = nullptr;
  size_t length = 0;
  NAPI_THROW_IF_FAILED_VOID(env, napi_get_arraybuffer_info(env, buffer, &data, &length));
  uintptr_t id = 0;
  {
    std::lock_guard<std::mutex> lock(gMappingsMutex);
    auto it = gMappingIdByAddr.find(data);
    if (it != gMappingIdByAddr.end() && gMappingsById.at(it->second).length == length) id = it->second;
  }
  if (id == 0) throw ErrnoError(env, EINVAL, "munmap", "the ArrayBuffer is not a live mapping made by mmap");
  // Detach first: from here on every view reads as empty, so munmap cannot leave a dangling view.
  NAPI_THROW_IF_FAILED_VOID(env, napi_detach_arraybuffer(env, buffer));
  ReleaseMapping(id);
}

// ---------------------------------------------------------------------------------------------
// Files, memfds, eventfds

Napi::Value Fstat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  struct stat st;
  if (fstat(fd, &st) < 0) throw ErrnoError(env, errno, "fstat");
  Napi::Object result = Napi::Object::New(env);
  result.Set("size", Napi::Number::New(env, static_cast<double>(st.st_size)));
  result.Set("mode", Napi::Number::New(env, st.st_mode));
  result.Set("blksize", Napi::Number::New(env, static_cast<double>(st.st_blksize)));
  result.Set("isRegular", Napi::Boolean::New(env, S_ISREG(st.st_mode)));
  return result;
}

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgCString(info, 0, "name");
  double size = ArgInteger(info, 1, "size", 0, kMaxSafeInteger);
  bool seal = ArgBool(info, 2, "seal");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) throw ErrnoError(env, errno, "memfd_create");
  const char* failed = nullptr;
  if (ftruncate(fd, static_cast<off_t>(size)) < 0) {
    failed = "ftruncate";
  } else if (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
    failed = "fcntl";
  }
  if (failed != nullptr) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, err, failed);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value GetSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    if (errno == EINVAL) return Napi::Number::New(env, 0);  // this kind of file has no seals
    throw ErrnoError(env, errno, "fcntl");
  }
  return Napi::Number::New(env, seals);
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) throw ErrnoError(env, errno, "fcntl");
  return Napi::Number::New(env, copy);
}

Napi::Value EventFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  unsigned int initval = static_cast<unsigned int>(ArgInteger(info, 0, "initval", 0, UINT32_MAX));
  int fd = eventfd(initval, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, errno, "eventfd");
  return Napi::Number::New(env, fd);
}

Napi::Value EventFdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t value = static_cast<uint64_t>(ArgInteger(info, 1, "value", 0, kMaxSafeInteger));
  ssize_t n;
  do {
    n = write(fd, &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    throw ErrnoError(env, errno, "write");
  }
  if (n != sizeof(value)) throw ErrnoError(env, EIO, "write", "short write of an 8-byte counter");
  return Napi::Boolean::New(env, true);
}

Napi::Value EventFdRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t value = 0;
  ssize_t n;
  do {
    n = read(fd, &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    throw ErrnoError(env, errno, "read");
  }
  if (n != sizeof(value)) throw ErrnoError(env, EIO, "read", "short read of an 8-byte counter");
  return Napi::Number::New(env, static_cast<double>(value));
}

// ---------------------------------------------------------------------------------------------
// Poller

// The libuv handle lives apart from the Poller: libuv owns it from uv_close until the close
// callback, which may come after the Poller (and its JS object) are gone.
struct PollHandle {
  uv_poll_t poll;
  Poller* owner;  // nullptr once the Poller has let go: late events are ignored
};

void OnPollHandleClosed(uv_handle_t* handle) { delete reinterpret_cast<PollHandle*>(handle); }

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {
                           InstanceMethod<&Poller::Start>("start"),
                           InstanceMethod<&Poller::Stop>("stop"),
                           InstanceMethod<&Poller::Close>("close"),
                       });
  }

  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    fd_ = ArgFd(info, 0);
    if (!info[1].IsFunction()) ThrowTypeError(env, "\"callback\" must be a function");
    state_ = State(env);
    uv_loop_t* loop = nullptr;
    NAPI_THROW_IF_FAILED_VOID(env, napi_get_uv_event_loop(env, &loop));
    auto* handle = new PollHandle();
    handle->owner = this;
    int err = uv_poll_init(loop, &handle->poll, fd_);
    if (err != 0) {
      delete handle;  // uv_poll_init failed before registering the handle with the loop
      throw UvError(env, err, "uv_poll_init");
    }
    handle_ = handle;
    state_->pollers.insert(this);
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    napi_status status = napi_async_init(env, nullptr, Napi::String::New(env, "vfu:Poller"), &async_);
    if (status != napi_ok) {
      async_ = nullptr;
      CloseHandle();
      NAPI_THROW_IF_FAILED_VOID(env, status);
    }
  }

  ~Poller() override {
    // Only reachable when not started (a started Poller holds a strong reference to itself).
    CloseHandle();
    if (async_ != nullptr) napi_async_destroy(Env(), async_);
  }

  // Stops and closes the libuv handle; touches nothing but libuv and our own state, so it is safe
  // from the environment cleanup hook and from the destructor.
  void CloseHandle() {
    if (handle_ == nullptr) return;
    uv_poll_stop(&handle_->poll);
    handle_->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll), OnPollHandleClosed);
    handle_ = nullptr;
    state_->pollers.erase(this);
  }

  // close(fd) is about to close our fd: stop watching it first.
  void StopForClose() {
    if (handle_ != nullptr) uv_poll_stop(&handle_->poll);
    Unpin();
  }

  int fd() const { return fd_; }

 private:
  void Pin() {
    if (!pinned_) {
      Ref();
      pinned_ = true;
    }
  }

  void Unpin() {
    if (pinned_) {
      Unref();
      pinned_ = false;
    }
  }

  void Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int events = static_cast<int>(ArgInteger(info, 0, "events", 0, UV_READABLE | UV_WRITABLE | UV_DISCONNECT));
    if (handle_ == nullptr) throw ErrnoError(env, EBADF, "uv_poll_start", "the Poller is closed");
    for (Poller* other : state_->pollers) {
      if (other != this && other->fd_ == fd_ && other->pinned_) {
        throw ErrnoError(env, EEXIST, "uv_poll_start",
                         "fd " + std::to_string(fd_) + " is already watched by a started Poller (libuv allows one)");
      }
    }
    int err = uv_poll_start(&handle_->poll, events, OnPoll);
    if (err != 0) throw UvError(env, err, "uv_poll_start");
    if (events != 0) {
      Pin();
    } else {
      Unpin();  // libuv treats an empty event set as stop
    }
  }

  void Stop(const Napi::CallbackInfo& /*info*/) {
    if (handle_ != nullptr) uv_poll_stop(&handle_->poll);
    Unpin();
  }

  void Close(const Napi::CallbackInfo& /*info*/) {
    CloseHandle();
    Unpin();
    callback_.Reset();  // the callback's closure may hold this object: break the cycle
    if (async_ != nullptr) {
      napi_async_destroy(Env(), async_);
      async_ = nullptr;
    }
  }

  static void OnPoll(uv_poll_t* poll, int status, int events) {
    Poller* self = reinterpret_cast<PollHandle*>(poll)->owner;
    if (self == nullptr || self->callback_.IsEmpty()) return;
    napi_env env = self->Env();
    // Nothing may escape into libuv: a C++ exception here would abort the process.
    try {
      Napi::HandleScope scope(env);
      Napi::Object receiver = self->Value();  // keeps the object alive through the call below
      // On an error libuv has already stopped the watcher: let go of the object as stop() would.
      if (!uv_is_active(reinterpret_cast<uv_handle_t*>(poll))) self->Unpin();
      napi_value argv[2] = {Napi::Number::New(env, status), Napi::Number::New(env, events)};
      napi_value result;
      napi_status callStatus =
          napi_make_callback(env, self->async_, receiver, self->callback_.Value(), 2, argv, &result);
      if (callStatus == napi_pending_exception) {
        napi_value error;
        if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
      }
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    } catch (...) {
      napi_value message;
      napi_value error;
      if (napi_create_string_utf8(env, "Poller: unexpected C++ exception", NAPI_AUTO_LENGTH, &message) == napi_ok &&
          napi_create_error(env, nullptr, message, &error) == napi_ok) {
        napi_fatal_exception(env, error);
      }
    }
  }

  PollHandle* handle_ = nullptr;
  Napi::FunctionReference callback_;
  napi_async_context async_ = nullptr;
  AddonState* state_ = nullptr;
  int fd_ = -1;
  bool pinned_ = false;  // holds a strong reference to its own JS object while started
};

void CloseAllPollers(void* arg) {
  auto* state = static_cast<AddonState*>(arg);
  std::vector<Poller*> open(state->pollers.begin(), state->pollers.end());
  for (Poller* p : open) p->CloseHandle();
}

void Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  for (Poller* p : State(env)->pollers) {
    if (p->fd() == fd) p->StopForClose();
  }
  // On Linux the fd is released even when close reports EINTR, so never retry.
  if (close(fd) < 0 && errno != EINTR) throw ErrnoError(env, errno, "close");
}

// Node unloads (dlclose) an addon when the worker that loaded it exits, but libuv may still have
// to run our close callbacks (and Node our finalizers) after that: without this, a worker that
// exits with a Poller open crashes in uv_run. RTLD_NODELETE keeps this library mapped for good.
void KeepLibraryLoaded() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info self;
    if (dladdr(reinterpret_cast<void*>(&KeepLibraryLoaded), &self) != 0 && self.dli_fname != nullptr) {
      dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);  // the handle is kept on purpose
    }
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  KeepLibraryLoaded();
  auto* state = new AddonState();
  env.SetInstanceData(state);
  NAPI_THROW_IF_FAILED(env, napi_add_env_cleanup_hook(env, CloseAllPollers, state), exports);

  exports.Set("listenUnix", Napi::Function::New<ListenUnix>(env, "listenUnix"));
  exports.Set("accept", Napi::Function::New<Accept>(env, "accept"));
  exports.Set("connectUnix", Napi::Function::New<ConnectUnix>(env, "connectUnix"));
  exports.Set("socketPair", Napi::Function::New<SocketPair>(env, "socketPair"));
  exports.Set("peerCredentials", Napi::Function::New<PeerCredentials>(env, "peerCredentials"));
  exports.Set("setParentDeathSignal", Napi::Function::New<SetParentDeathSignal>(env, "setParentDeathSignal"));
  exports.Set("recvMsg", Napi::Function::New<RecvMsg>(env, "recvMsg"));
  exports.Set("sendMsg", Napi::Function::New<SendMsg>(env, "sendMsg"));
  exports.Set("close", Napi::Function::New<Close>(env, "close"));
  exports.Set("dup", Napi::Function::New<Dup>(env, "dup"));
  exports.Set("mmap", Napi::Function::New<Mmap>(env, "mmap"));
  exports.Set("unmap", Napi::Function::New<Unmap>(env, "unmap"));
  exports.Set("fstat", Napi::Function::New<Fstat>(env, "fstat"));
  exports.Set("memfdCreate", Napi::Function::New<MemfdCreate>(env, "memfdCreate"));
  exports.Set("getSeals", Napi::Function::New<GetSeals>(env, "getSeals"));
  exports.Set("eventfd", Napi::Function::New<EventFd>(env, "eventfd"));
  exports.Set("eventfdWrite", Napi::Function::New<EventFdWrite>(env, "eventfdWrite"));
  exports.Set("eventfdRead", Napi::Function::New<EventFdRead>(env, "eventfdRead"));
  exports.Set("Poller", Poller::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(vfu_native, Init)
