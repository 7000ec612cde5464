// twinblade native addon: the few syscalls Node lacks (O_DIRECT I/O on aligned buffers, mmap,
// block-device ioctls, openpty, a store fence), hardware CRC32C and RAID parity XOR. Thin by
// design: every call checks its arguments, does one syscall (or one kernel loop), and reports
// errno as an Error with code/errno/syscall.
#include <napi.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <linux/fs.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "crc32c.h"
#include "xor.h"

namespace {

// ---------------------------------------------------------------------------------------
// Errors

const char* ErrnoName(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case ESPIPE: return "ESPIPE";
    case EROFS: return "EROFS";
    case EPIPE: return "EPIPE";
    case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EOVERFLOW: return "EOVERFLOW";
    case ENOMEDIUM: return "ENOMEDIUM";
    case EREMOTEIO: return "EREMOTEIO";
    case EDQUOT: return "EDQUOT";
    default: return "EUNKNOWN";
  }
}

// Node's own fs errors carry a negative errno (libuv style); ours do the same so that a
// caller can treat both alike.
Napi::Error ErrnoError(Napi::Env env, int e, const char* syscall, const std::string& path = "") {
  std::string msg = std::string(ErrnoName(e)) + ": " + std::strerror(e) + ", " + syscall;
  if (!path.empty()) msg += " '" + path + "'";
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, ErrnoName(e)));
  err.Set("errno", Napi::Number::New(env, -e));
  err.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) err.Set("path", Napi::String::New(env, path));
  return err;
}

Napi::Value ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError err = Napi::TypeError::New(env, msg);
  err.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  err.ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowRange(Napi::Env env, const std::string& msg) {
  Napi::RangeError err = Napi::RangeError::New(env, msg);
  err.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  err.ThrowAsJavaScriptException();
  return env.Undefined();
}

// ---------------------------------------------------------------------------------------
// Argument helpers. JS numbers are doubles: offsets up to 2^53 are exact.

constexpr double kMaxSafeInteger = 9007199254740991.0;

bool GetNonNegInt(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t* out) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) {
    ThrowType(env, std::string(what) + " must be a number");
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > kMaxSafeInteger || d != static_cast<double>(static_cast<int64_t>(d))) {
    ThrowRange(env, std::string(what) + " must be a non-negative safe integer");
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

bool GetFd(const Napi::CallbackInfo& info, size_t i, int* out) {
  int64_t v = 0;
  if (!GetNonNegInt(info, i, "fd", &v)) return false;
  if (v > INT32_MAX) {
    ThrowRange(info.Env(), "fd out of range");
    return false;
  }
  *out = static_cast<int>(v);
  return true;
}

// Any TypedArray or DataView: its bytes [byteOffset, byteOffset + byteLength).
bool GetBytes(const Napi::CallbackInfo& info, size_t i, const char* what, uint8_t** data, size_t* len) {
  Napi::Env env = info.Env();
  if (info.Length() <= i) {
    ThrowType(env, std::string(what) + " must be a Uint8Array");
    return false;
  }
  Napi::Value v = info[i];
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    Napi::ArrayBuffer ab = ta.ArrayBuffer();
    *data = static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
    *len = ta.ByteLength();
    return true;
  }
  if (v.IsDataView()) {
    Napi::DataView dv = v.As<Napi::DataView>();
    *data = static_cast<uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
    *len = dv.ByteLength();
    return true;
  }
  ThrowType(env, std::string(what) + " must be a Uint8Array");
  return false;
}

// ---------------------------------------------------------------------------------------
// Aligned buffers

bool IsPowerOfTwo(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// The arguments of a gather write (pwritev, pwriteXor): fd (0), a non-empty array (1; `arrayError`
// if it is not one), position (2), alignment (3, optional: 0 or a power of two up to 2 MiB).
// False with a JavaScript exception pending if one is wrong.
bool GetWriteTarget(const Napi::CallbackInfo& info, const char* arrayError, int* fd, int64_t* position, int64_t* alignment) {
  Napi::Env env = info.Env();
  if (!GetFd(info, 0, fd)) return false;
  if (info.Length() <= 1 || !info[1].IsArray() || info[1].As<Napi::Array>().Length() == 0) {
    ThrowType(env, arrayError);
    return false;
  }
  if (!GetNonNegInt(info, 2, "position", position)) return false;
  *alignment = 0;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!GetNonNegInt(info, 3, "alignment", alignment)) return false;
    if (*alignment != 0 && (!IsPowerOfTwo(*alignment) || *alignment > (1 << 21))) {
      ThrowRange(env, "alignment must be 0 or a power of two up to 2 MiB");
      return false;
    }
  }
  return true;
}

void FreeAligned(Napi::Env /*env*/, uint8_t* data) { std::free(data); }

// allocAligned(size, alignment = 4096): a zeroed Buffer whose memory is aligned for O_DIRECT.
Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t size = 0;
  int64_t alignment = 4096;
  if (!GetNonNegInt(info, 0, "size", &size)) return env.Undefined();
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!GetNonNegInt(info, 1, "alignment", &alignment)) return env.Undefined();
  }
  if (!IsPowerOfTwo(alignment) || alignment < static_cast<int64_t>(sizeof(void*)) || alignment > (1 << 21)) {
    return ThrowRange(env, "alignment must be a power of two between 8 and 2 MiB");
  }
  if (size > (int64_t{1} << 32)) return ThrowRange(env, "size must be at most 4 GiB");
  void* p = nullptr;
  // A zero-size request still gets a real allocation so that the finalizer has one shape.
  int rc = posix_memalign(&p, static_cast<size_t>(alignment), size == 0 ? static_cast<size_t>(alignment) : static_cast<size_t>(size));
  if (rc != 0) {
    ErrnoError(env, rc, "posix_memalign").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::memset(p, 0, static_cast<size_t>(size));
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(p), static_cast<size_t>(size), FreeAligned);
}

// isAligned(view, alignment): whether the view's first byte sits on an `alignment` boundary.
Napi::Value IsAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t len = 0;
  int64_t alignment = 0;
  if (!GetBytes(info, 0, "view", &data, &len)) return env.Undefined();
  if (!GetNonNegInt(info, 1, "alignment", &alignment)) return env.Undefined();
  if (!IsPowerOfTwo(alignment)) return ThrowRange(env, "alignment must be a power of two");
  return Napi::Boolean::New(env, (reinterpret_cast<uintptr_t>(data) & static_cast<uintptr_t>(alignment - 1)) == 0);
}

// ---------------------------------------------------------------------------------------
// Opening and block-device information (synchronous: these never wait for the medium).

// openDirect(path, writable): an fd opened with O_DIRECT | O_CLOEXEC. A file system that
// refuses O_DIRECT (tmpfs) fails with EINVAL; the caller decides whether to fall back.
Napi::Value OpenDirect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBoolean()) {
    return ThrowType(env, "openDirect(path: string, writable: boolean)");
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.empty() || path.find('\0') != std::string::npos) return ThrowType(env, "path must be a non-empty string");
  bool writable = info[1].As<Napi::Boolean>().Value();
  int flags = (writable ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC;
  int fd;
  do {
    fd = ::open(path.c_str(), flags);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    ErrnoError(env, errno, "open", path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// blockDeviceInfo(fd): { sizeBytes, logicalSectorSize, physicalSectorSize } of a block device.
Napi::Value BlockDeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!GetFd(info, 0, &fd)) return env.Undefined();
  uint64_t size = 0;
  int logical = 0;
  unsigned int physical = 0;
  if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
    ErrnoError(env, errno, "ioctl(BLKGETSIZE64)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (ioctl(fd, BLKSSZGET, &logical) != 0) {
    ErrnoError(env, errno, "ioctl(BLKSSZGET)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (ioctl(fd, BLKPBSZGET, &physical) != 0) physical = static_cast<unsigned int>(logical);
  Napi::Object out = Napi::Object::New(env);
  out.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(size)));
  out.Set("logicalSectorSize", Napi::Number::New(env, logical));
  out.Set("physicalSectorSize", Napi::Number::New(env, physical));
  return out;
}

// ---------------------------------------------------------------------------------------
// Asynchronous I/O: each call runs one syscall (loop) on the libuv thread pool and settles a
// Promise. The JS buffer is held by a reference until the worker completes.

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* syscall)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), syscall_(syscall) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void OnOK() override {
    Napi::Env env = Env();
    if (errno_ != 0) {
      deferred_.Reject(ErrnoError(env, errno_, syscall_).Value());
    } else {
      deferred_.Resolve(Result(env));
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

  Napi::Promise::Deferred deferred_;
  const char* syscall_;
  int errno_ = 0;
};

class IoWorker : public PromiseWorker {
 public:
  IoWorker(Napi::Env env, bool write, int fd, Napi::Value view, uint8_t* data, size_t len, int64_t position)
      : PromiseWorker(env, write ? "pwrite" : "pread"),
        write_(write), fd_(fd), data_(data), len_(len), position_(position) {
    view_ = Napi::Persistent(view.As<Napi::Object>());
  }

 protected:
  // Loops over short transfers; stops at end of file on a read (the result says how much).
  void Execute() override {
    size_t done = 0;
    while (done < len_) {
      ssize_t n = write_ ? ::pwrite(fd_, data_ + done, len_ - done, position_ + static_cast<int64_t>(done))
                         : ::pread(fd_, data_ + done, len_ - done, position_ + static_cast<int64_t>(done));
      if (n < 0) {
        if (errno == EINTR) continue;
        errno_ = errno;
        return;
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    done_ = done;
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(done_)); }

 private:
  bool write_;
  int fd_;
  uint8_t* data_;
  size_t len_;
  int64_t position_;
  size_t done_ = 0;
  Napi::ObjectReference view_;
};

Napi::Value DoIo(const Napi::CallbackInfo& info, bool write) {
  Napi::Env env = info.Env();
  int fd = -1;
  uint8_t* data = nullptr;
  size_t len = 0;
  int64_t position = 0;
  if (!GetFd(info, 0, &fd)) return env.Undefined();
  if (!GetBytes(info, 1, "buffer", &data, &len)) return env.Undefined();
  if (!GetNonNegInt(info, 2, "position", &position)) return env.Undefined();
  auto* w = new IoWorker(env, write, fd, info[1], data, len, position);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// pread(fd, buffer, position): Promise<bytesRead>. pwrite(fd, buffer, position): Promise<bytesWritten>.
Napi::Value Pread(const Napi::CallbackInfo& info) { return DoIo(info, false); }
Napi::Value Pwrite(const Napi::CallbackInfo& info) { return DoIo(info, true); }

class FdatasyncWorker : public PromiseWorker {
 public:
  FdatasyncWorker(Napi::Env env, int fd) : PromiseWorker(env, "fdatasync"), fd_(fd) {}

 protected:
  void Execute() override {
    int rc;
    do {
      rc = ::fdatasync(fd_);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) errno_ = errno;
  }

 private:
  int fd_;
};

// fdatasync(fd): Promise<void>.
Napi::Value Fdatasync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!GetFd(info, 0, &fd)) return env.Undefined();
  auto* w = new FdatasyncWorker(env, fd);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// ---------------------------------------------------------------------------------------
// Shared mappings. A mapping is an external ArrayBuffer; `munmap` unmaps and detaches it (so
// a stale view reads as empty rather than faulting); otherwise the finalizer unmaps it.

struct Mapping {
  void* addr;
  size_t length;
  bool mapped;
};

// Keyed by the mapping's address; touched only on the JS thread.
std::map<void*, Mapping*>& Mappings() {
  static std::map<void*, Mapping*> m;
  return m;
}

void FinalizeMapping(Napi::Env /*env*/, void* /*data*/, Mapping* m) {
  if (m->mapped) ::munmap(m->addr, m->length);
  auto it = Mappings().find(m->addr);
  if (it != Mappings().end() && it->second == m) Mappings().erase(it);
  delete m;
}

// mmap(fd, length, writable = true): a MAP_SHARED mapping of [0, length) of fd.
Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  int64_t length = 0;
  if (!GetFd(info, 0, &fd)) return env.Undefined();
  if (!GetNonNegInt(info, 1, "length", &length)) return env.Undefined();
  bool writable = true;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsBoolean()) return ThrowType(env, "writable must be a boolean");
    writable = info[2].As<Napi::Boolean>().Value();
  }
  if (length == 0) return ThrowRange(env, "length must be positive");
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* addr = ::mmap(nullptr, static_cast<size_t>(length), prot, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    ErrnoError(env, errno, "mmap").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* m = new Mapping{addr, static_cast<size_t>(length), true};
  Mappings()[addr] = m;
  return Napi::ArrayBuffer::New(env, addr, static_cast<size_t>(length), FinalizeMapping, m);
}

Mapping* FindMapping(const Napi::CallbackInfo& info, Napi::ArrayBuffer* ab) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) {
    ThrowType(env, "mapping must be the ArrayBuffer returned by mmap");
    return nullptr;
  }
  *ab = info[0].As<Napi::ArrayBuffer>();
  auto it = Mappings().find(ab->Data());
  if (ab->ByteLength() == 0 || it == Mappings().end() || !it->second->mapped) {
    ThrowType(env, "mapping must be a live ArrayBuffer returned by mmap");
    return nullptr;
  }
  return it->second;
}

// munmap(mapping): unmaps now and detaches the ArrayBuffer.
Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer ab;
  Mapping* m = FindMapping(info, &ab);
  if (m == nullptr) return env.Undefined();
  if (::munmap(m->addr, m->length) != 0) {
    ErrnoError(env, errno, "munmap").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  m->mapped = false;
  Mappings().erase(m->addr);
  ab.Detach();
  return env.Undefined();
}

class MsyncWorker : public PromiseWorker {
 public:
  MsyncWorker(Napi::Env env, Napi::ArrayBuffer ab, void* addr, size_t len, int flags)
      : PromiseWorker(env, "msync"), addr_(addr), len_(len), flags_(flags) {
    ab_ = Napi::Persistent(ab);
  }

 protected:
  void Execute() override {
    if (::msync(addr_, len_, flags_) != 0) errno_ = errno;
  }

 private:
  void* addr_;
  size_t len_;
  int flags_;
  Napi::Reference<Napi::ArrayBuffer> ab_;
};

// msync(mapping, offset, length, sync): Promise<void>; the range is widened to whole pages.
Napi::Value Msync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer ab;
  Mapping* m = FindMapping(info, &ab);
  if (m == nullptr) return env.Undefined();
  int64_t offset = 0;
  int64_t length = 0;
  if (!GetNonNegInt(info, 1, "offset", &offset)) return env.Undefined();
  if (!GetNonNegInt(info, 2, "length", &length)) return env.Undefined();
  if (info.Length() < 4 || !info[3].IsBoolean()) return ThrowType(env, "sync must be a boolean");
  if (static_cast<uint64_t>(offset) + static_cast<uint64_t>(length) > m->length) {
    return ThrowRange(env, "msync range outside the mapping");
  }
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t start = reinterpret_cast<uintptr_t>(m->addr) + static_cast<uintptr_t>(offset);
  uintptr_t end = start + static_cast<uintptr_t>(length);
  start &= ~(page - 1);
  int flags = info[3].As<Napi::Boolean>().Value() ? MS_SYNC : MS_ASYNC;
  auto* w = new MsyncWorker(env, ab, reinterpret_cast<void*>(start), end - start, flags);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// storeFence(): a full memory fence. Stores issued before it are globally visible (and, on
// battery-backed memory, durable) before any store issued after it.
Napi::Value StoreFence(const Napi::CallbackInfo& info) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------
// CRC32C

// crc32c(data, seed = 0): unsigned CRC32C continuing from `seed`, same as core/crc32c.ts.
Napi::Value Crc32c(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t len = 0;
  if (!GetBytes(info, 0, "data", &data, &len)) return env.Undefined();
  uint32_t seed = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    int64_t s = 0;
    if (!GetNonNegInt(info, 1, "seed", &s)) return env.Undefined();
    if (s > 0xffffffffLL) return ThrowRange(env, "seed must be an unsigned 32-bit integer");
    seed = static_cast<uint32_t>(s);
  }
  return Napi::Number::New(env, twinblade::Crc32c(data, len, seed));
}

// crc32cPortable(data, seed = 0): the table fallback, exposed so tests can compare both paths.
Napi::Value Crc32cPortable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t len = 0;
  if (!GetBytes(info, 0, "data", &data, &len)) return env.Undefined();
  uint32_t seed = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    int64_t s = 0;
    if (!GetNonNegInt(info, 1, "seed", &s)) return env.Undefined();
    if (s > 0xffffffffLL) return ThrowRange(env, "seed must be an unsigned 32-bit integer");
    seed = static_cast<uint32_t>(s);
  }
  return Napi::Number::New(env, twinblade::Crc32cPortable(data, len, seed));
}

// ---------------------------------------------------------------------------------------
// Pseudo-terminals

// openpty(): { master, slave, slavePath }, both ends raw (cfmakeraw) and close-on-exec; the
// master non-blocking.
Napi::Value OpenPty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int master = -1;
  int slave = -1;
  char name[256] = {0};
  struct termios tio;
  std::memset(&tio, 0, sizeof tio);
  cfmakeraw(&tio);
  if (::openpty(&master, &slave, name, &tio, nullptr) != 0) {
    ErrnoError(env, errno, "openpty").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // openpty applies the termios to the slave; the master gets the same raw settings so that
  // neither end echoes or translates bytes.
  struct termios mtio;
  if (tcgetattr(master, &mtio) == 0) {
    cfmakeraw(&mtio);
    tcsetattr(master, TCSANOW, &mtio);
  }
  fcntl(master, F_SETFD, FD_CLOEXEC);
  fcntl(slave, F_SETFD, FD_CLOEXEC);
  // The master is non-blocking. Node's tty stream reads it on the event loop, and libuv
  // leaves a read-write tty it cannot reopen in blocking mode: a read that found the queue
  // empty after a full buffer then blocked the event loop, and with it the very writer it
  // waited for (a deadlocked test run). Writers of the master retry on EAGAIN.
  int mflags = fcntl(master, F_GETFL);
  if (mflags >= 0) fcntl(master, F_SETFL, mflags | O_NONBLOCK);
  Napi::Object out = Napi::Object::New(env);
  out.Set("master", Napi::Number::New(env, master));
  out.Set("slave", Napi::Number::New(env, slave));
  out.Set("slavePath", Napi::String::New(env, name));
  return out;
}

// ---------------------------------------------------------------------------------------
// Parity (RAID): synchronous, on the calling thread; the buffers must not overlap.

// Reads `arr` (a JS array of Uint8Arrays) into pointers, each `want` bytes long.
bool GetByteArray(const Napi::CallbackInfo& info, size_t i, const char* what, size_t want, std::vector<uint8_t*>* out) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsArray()) {
    ThrowType(env, std::string(what) + " must be an array of Uint8Arrays");
    return false;
  }
  Napi::Array arr = info[i].As<Napi::Array>();
  uint32_t n = arr.Length();
  if (n == 0) {
    ThrowRange(env, std::string(what) + " must not be empty");
    return false;
  }
  // Two N-API calls per element (a CP write passes about a thousand 4 KiB blocks): the
  // element, then its type, length and first-byte pointer at once.
  out->reserve(n);
  for (uint32_t k = 0; k < n; k++) {
    napi_value v = nullptr;
    napi_status st = napi_get_element(env, arr, k, &v);
    if (st == napi_pending_exception) return false;
    napi_typedarray_type type = napi_uint8_array;
    size_t length = 0;
    void* data = nullptr;
    if (st != napi_ok || napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok) {
      ThrowType(env, std::string(what) + " must be an array of Uint8Arrays");
      return false;
    }
    size_t element = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: element = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: element = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: element = 8; break;
      default: element = 1; break;
    }
    if (length * element != want) {
      ThrowRange(env, std::string(what) + " must all have the same length as the output");
      return false;
    }
    out->push_back(static_cast<uint8_t*>(data));
  }
  return true;
}

// xorInto(dst, src): dst ^= src (equal lengths).
Napi::Value XorIntoFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* dst = nullptr;
  uint8_t* src = nullptr;
  size_t dn = 0;
  size_t sn = 0;
  if (!GetBytes(info, 0, "dst", &dst, &dn)) return env.Undefined();
  if (!GetBytes(info, 1, "src", &src, &sn)) return env.Undefined();
  if (dn != sn) return ThrowRange(env, "dst and src must have the same length");
  twinblade::XorInto(dst, src, dn);
  return env.Undefined();
}

// xorAll(out, parts): out = parts[0] ^ parts[1] ^ ... (every part as long as out).
Napi::Value XorAllFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* out = nullptr;
  size_t n = 0;
  if (!GetBytes(info, 0, "out", &out, &n)) return env.Undefined();
  std::vector<uint8_t*> parts;
  if (!GetByteArray(info, 1, "parts", n, &parts)) return env.Undefined();
  twinblade::XorAll(out, parts.data(), parts.size(), n);
  return env.Undefined();
}

// splitStripes(data, unitBytes, members, parity | null): see xor.h.
Napi::Value SplitStripesFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t n = 0;
  int64_t unit = 0;
  if (!GetBytes(info, 0, "data", &data, &n)) return env.Undefined();
  if (!GetNonNegInt(info, 1, "unitBytes", &unit)) return env.Undefined();
  if (unit == 0) return ThrowRange(env, "unitBytes must be positive");
  if (info.Length() <= 2 || !info[2].IsArray() || info[2].As<Napi::Array>().Length() == 0) {
    return ThrowType(env, "members must be a non-empty array of Uint8Arrays");
  }
  size_t memberCount = info[2].As<Napi::Array>().Length();
  size_t stripeBytes = static_cast<size_t>(unit) * memberCount;
  if (n % stripeBytes != 0) return ThrowRange(env, "data must hold whole stripes (unitBytes * members.length)");
  size_t stripes = n / stripeBytes;
  std::vector<uint8_t*> members;
  if (!GetByteArray(info, 2, "members", stripes * static_cast<size_t>(unit), &members)) return env.Undefined();
  uint8_t* parity = nullptr;
  if (info.Length() > 3 && !info[3].IsNull() && !info[3].IsUndefined()) {
    size_t pn = 0;
    if (!GetBytes(info, 3, "parity", &parity, &pn)) return env.Undefined();
    if (pn != stripes * static_cast<size_t>(unit)) return ThrowRange(env, "parity must hold one unit per stripe");
  }
  twinblade::SplitStripes(data, static_cast<size_t>(unit), stripes, members.data(), memberCount, parity);
  return env.Undefined();
}

// The checked arguments of gatherStripes / gatherStripesAsync.
struct GatherArgs {
  std::vector<uint8_t*> blocks;
  std::vector<uint8_t*> members;
  uint8_t* parity = nullptr;
  size_t blockBytes = 0;
  size_t unitBlocks = 0;
  size_t stripes = 0;
};

// Fills `a` from (blocks, unitBlocks, members, parity | null); false with an exception pending.
bool GetGatherArgs(const Napi::CallbackInfo& info, GatherArgs* a) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0) {
    ThrowType(env, "blocks must be a non-empty array of Uint8Arrays");
    return false;
  }
  Napi::Array arr = info[0].As<Napi::Array>();
  Napi::Value first = arr.Get(uint32_t{0});
  if (!first.IsTypedArray()) {
    ThrowType(env, "blocks must be a non-empty array of Uint8Arrays");
    return false;
  }
  a->blockBytes = first.As<Napi::TypedArray>().ByteLength();
  if (a->blockBytes == 0) {
    ThrowRange(env, "blocks must not be empty");
    return false;
  }
  if (!GetByteArray(info, 0, "blocks", a->blockBytes, &a->blocks)) return false;
  int64_t unitBlocks = 0;
  if (!GetNonNegInt(info, 1, "unitBlocks", &unitBlocks)) return false;
  if (unitBlocks == 0) {
    ThrowRange(env, "unitBlocks must be positive");
    return false;
  }
  a->unitBlocks = static_cast<size_t>(unitBlocks);
  if (info.Length() <= 2 || !info[2].IsArray() || info[2].As<Napi::Array>().Length() == 0) {
    ThrowType(env, "members must be a non-empty array of Uint8Arrays");
    return false;
  }
  size_t memberCount = info[2].As<Napi::Array>().Length();
  size_t stripeBlocks = a->unitBlocks * memberCount;
  if (a->blocks.size() % stripeBlocks != 0) {
    ThrowRange(env, "blocks must make whole stripes (unitBlocks * members.length)");
    return false;
  }
  a->stripes = a->blocks.size() / stripeBlocks;
  size_t runBytes = a->stripes * a->unitBlocks * a->blockBytes;
  if (!GetByteArray(info, 2, "members", runBytes, &a->members)) return false;
  if (info.Length() > 3 && !info[3].IsNull() && !info[3].IsUndefined()) {
    size_t pn = 0;
    if (!GetBytes(info, 3, "parity", &a->parity, &pn)) return false;
    if (pn != runBytes) {
      ThrowRange(env, "parity must be as long as a member run");
      return false;
    }
  }
  return true;
}

// gatherStripes(blocks, unitBlocks, members, parity | null): see xor.h. Every block has the
// same length (the block size); members and parity hold stripes * unitBlocks blocks each.
Napi::Value GatherStripesFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GatherArgs a;
  if (!GetGatherArgs(info, &a)) return env.Undefined();
  twinblade::GatherStripes(a.blocks.data(), a.blockBytes, a.unitBlocks, a.stripes, a.members.data(), a.members.size(), a.parity);
  return env.Undefined();
}

// gatherStripesAsync(blocks, unitBlocks, members, parity | null): Promise<void>. The same
// gather on the libuv thread pool, so that a CP's main thread freezes and issues the next
// write while this one's data is copied and its parity computed (a 4 MiB write: ~1 ms of
// memory bandwidth). The arrays (and so every buffer in them) are held by references until
// the worker completes; the caller must not change the buffers before the promise settles.
class GatherWorker : public PromiseWorker {
 public:
  GatherWorker(const Napi::CallbackInfo& info, GatherArgs&& args) : PromiseWorker(info.Env(), "gatherStripes"), args_(std::move(args)) {
    blocks_ = Napi::Persistent(info[0].As<Napi::Object>());
    members_ = Napi::Persistent(info[2].As<Napi::Object>());
    if (args_.parity != nullptr) parity_ = Napi::Persistent(info[3].As<Napi::Object>());
  }

 protected:
  void Execute() override {
    twinblade::GatherStripes(args_.blocks.data(), args_.blockBytes, args_.unitBlocks, args_.stripes, args_.members.data(), args_.members.size(),
                             args_.parity);
  }

 private:
  GatherArgs args_;
  Napi::ObjectReference blocks_;
  Napi::ObjectReference members_;
  Napi::ObjectReference parity_;
};

Napi::Value GatherStripesAsyncFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GatherArgs a;
  if (!GetGatherArgs(info, &a)) return env.Undefined();
  auto* w = new GatherWorker(info, std::move(a));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// One member's parts for xorConcat: pointers and lengths of its Uint8Arrays, in order.
bool GetParts(Napi::Env env, napi_value arr, const char* what, std::vector<const uint8_t*>* ptrs, std::vector<size_t>* lens, size_t* total) {
  bool isArray = false;
  uint32_t n = 0;
  if (napi_is_array(env, arr, &isArray) != napi_ok || !isArray || napi_get_array_length(env, arr, &n) != napi_ok) {
    ThrowType(env, std::string(what) + " must be arrays of Uint8Arrays");
    return false;
  }
  ptrs->reserve(n);
  lens->reserve(n);
  *total = 0;
  for (uint32_t k = 0; k < n; k++) {
    napi_value v = nullptr;
    napi_status st = napi_get_element(env, arr, k, &v);
    if (st == napi_pending_exception) return false;
    napi_typedarray_type type = napi_uint8_array;
    size_t length = 0;
    void* data = nullptr;
    if (st != napi_ok || napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok || type != napi_uint8_array) {
      ThrowType(env, std::string(what) + " must be arrays of Uint8Arrays");
      return false;
    }
    ptrs->push_back(static_cast<const uint8_t*>(data));
    lens->push_back(length);
    *total += length;
  }
  return true;
}

// xorConcat(out, members): out = XOR over members of the concatenation of each member's
// Uint8Arrays (each concatenation as long as out); see xor.h. The parity of a CP write whose
// blocks stay where they are: a member's blocks, adjacent pieces of one slab merged, are a
// few segments, so this costs a few calls per member rather than one per block.
Napi::Value XorConcatFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* out = nullptr;
  size_t n = 0;
  if (!GetBytes(info, 0, "out", &out, &n)) return env.Undefined();
  if (info.Length() <= 1 || !info[1].IsArray() || info[1].As<Napi::Array>().Length() == 0) {
    return ThrowType(env, "members must be a non-empty array of arrays of Uint8Arrays");
  }
  Napi::Array arr = info[1].As<Napi::Array>();
  size_t memberCount = arr.Length();
  std::vector<std::vector<const uint8_t*>> ptrs(memberCount);
  std::vector<std::vector<size_t>> lens(memberCount);
  for (uint32_t m = 0; m < memberCount; m++) {
    size_t total = 0;
    if (!GetParts(env, arr.Get(m), "members", &ptrs[m], &lens[m], &total)) return env.Undefined();
    if (total != n) return ThrowRange(env, "every member's parts must add up to the length of out");
  }
  std::vector<const uint8_t* const*> segs(memberCount);
  std::vector<const size_t*> lenPtrs(memberCount);
  std::vector<size_t> counts(memberCount);
  for (size_t m = 0; m < memberCount; m++) {
    segs[m] = ptrs[m].data();
    lenPtrs[m] = lens[m].data();
    counts[m] = ptrs[m].size();
  }
  twinblade::XorConcat(out, n, segs.data(), lenPtrs.data(), counts.data(), memberCount);
  return env.Undefined();
}

// pwritev(fd, parts, position, alignment): Promise<bytesWritten>. Writes the concatenation of
// `parts` at `position` straight from their memory (a CP's page buffers), on the thread pool,
// looping over IOV_MAX batches and short writes. Parts that touch end to end in memory become
// one iovec. With `alignment` > 0 (O_DIRECT), every run of parts whose address or length is not
// a multiple of it is copied into one aligned scratch buffer on the pool thread first, so the
// main thread never copies; aligned parts are written in place. The parts array (and so its
// buffers) is held by a reference until the worker completes; the caller must change neither.
// Each pool thread keeps one bounce buffer for pwritev (up to kScratchKeepBytes) rather than
// allocating a fresh one per call: fresh multi-MiB memory costs a page fault and a zeroed page
// per 4 KiB on first touch. A worker uses it only inside Execute, on that thread.
constexpr size_t kScratchKeepBytes = 8 * 1024 * 1024;
struct ThreadScratch {
  uint8_t* data = nullptr;
  size_t bytes = 0;
  size_t alignment = 0;
  ~ThreadScratch() { std::free(data); }
};
thread_local ThreadScratch threadScratch;

// `bytes` of `alignment`-aligned memory for use inside one Execute on this pool thread: the
// thread's kept buffer when it is big enough, else a new one that becomes the kept buffer (up to
// kScratchKeepBytes) or is returned in `*owned` for the worker to free. 0 or the errno.
int TakeThreadScratch(size_t bytes, size_t alignment, uint8_t** out, uint8_t** owned) {
  ThreadScratch& t = threadScratch;
  if (t.data != nullptr && t.bytes >= bytes && t.alignment >= alignment) {
    *out = t.data;
    return 0;
  }
  void* p = nullptr;
  int rc = posix_memalign(&p, alignment, bytes);
  if (rc != 0) return rc;
  *out = static_cast<uint8_t*>(p);
  if (bytes <= kScratchKeepBytes) {
    std::free(t.data);
    t.data = *out;
    t.bytes = bytes;
    t.alignment = alignment;
  } else {
    *owned = *out;
  }
  return 0;
}

// pwrite of all of [data, data+len) at `position`, looping over short writes and EINTR; 0 or the errno.
int PwriteAll(int fd, const uint8_t* data, size_t len, int64_t position, size_t* done) {
  *done = 0;
  while (*done < len) {
    ssize_t n = ::pwrite(fd, data + *done, len - *done, position + static_cast<int64_t>(*done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) break;
    *done += static_cast<size_t>(n);
  }
  return 0;
}

class WritevWorker : public PromiseWorker {
 public:
  WritevWorker(Napi::Env env, int fd, Napi::Value parts, std::vector<iovec>&& segs, int64_t position, size_t alignment)
      : PromiseWorker(env, "pwritev"), fd_(fd), segs_(std::move(segs)), position_(position), alignment_(alignment) {
    parts_ = Napi::Persistent(parts.As<Napi::Object>());
  }
  ~WritevWorker() override { std::free(owned_); }

 protected:
  void Execute() override {
    if (alignment_ > 0 && !Bounce()) return;
    size_t idx = 0;
    size_t done = 0;
    const size_t iovMax = IOV_MAX;
    while (idx < segs_.size()) {
      size_t count = segs_.size() - idx < iovMax ? segs_.size() - idx : iovMax;
      ssize_t n = ::pwritev(fd_, &segs_[idx], static_cast<int>(count), position_ + static_cast<int64_t>(done));
      if (n < 0) {
        if (errno == EINTR) continue;
        errno_ = errno;
        return;
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
      size_t k = static_cast<size_t>(n);
      while (k > 0 && idx < segs_.size()) {
        iovec& v = segs_[idx];
        if (k >= v.iov_len) {
          k -= v.iov_len;
          idx++;
        } else {
          v.iov_base = static_cast<uint8_t*>(v.iov_base) + k;
          v.iov_len -= k;
          k = 0;
        }
      }
    }
    done_ = done;
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(done_)); }

 private:
  bool Misaligned(const iovec& v) const {
    return (reinterpret_cast<uintptr_t>(v.iov_base) % alignment_) != 0 || v.iov_len % alignment_ != 0;
  }

  // Replaces every run of misaligned segments by one segment of an aligned scratch buffer. A
  // run ends once its length is a multiple of the alignment and the next segment is aligned,
  // so every scratch segment starts aligned too.
  bool Bounce() {
    size_t scratchBytes = 0;
    size_t run = 0;
    bool open = false;
    for (size_t i = 0; i < segs_.size(); i++) {
      const iovec& v = segs_[i];
      if (!open && !Misaligned(v)) continue;
      open = true;
      run += v.iov_len;
      bool last = i + 1 == segs_.size();
      if (last || (run % alignment_ == 0 && !Misaligned(segs_[i + 1]))) {
        scratchBytes += (run + alignment_ - 1) / alignment_ * alignment_;
        run = 0;
        open = false;
      }
    }
    if (scratchBytes == 0) return true;
    int rc = TakeThreadScratch(scratchBytes, alignment_, &scratch_, &owned_);
    if (rc != 0) {
      errno_ = rc;
      return false;
    }
    std::vector<iovec> out;
    out.reserve(segs_.size());
    uint8_t* at = scratch_;
    iovec cur{nullptr, 0};
    open = false;
    for (size_t i = 0; i < segs_.size(); i++) {
      const iovec& v = segs_[i];
      if (!open && !Misaligned(v)) {
        out.push_back(v);
        continue;
      }
      if (!open) cur = iovec{at, 0};
      open = true;
      std::memcpy(static_cast<uint8_t*>(cur.iov_base) + cur.iov_len, v.iov_base, v.iov_len);
      cur.iov_len += v.iov_len;
      bool last = i + 1 == segs_.size();
      if (last || (cur.iov_len % alignment_ == 0 && !Misaligned(segs_[i + 1]))) {
        out.push_back(cur);
        at += (cur.iov_len + alignment_ - 1) / alignment_ * alignment_;
        open = false;
      }
    }
    segs_ = std::move(out);
    return true;
  }

  int fd_;
  std::vector<iovec> segs_;
  int64_t position_;
  size_t alignment_;
  uint8_t* scratch_ = nullptr;
  // The bounce buffer when too big for the thread's own (freed with the worker).
  uint8_t* owned_ = nullptr;
  size_t done_ = 0;
  Napi::ObjectReference parts_;
};

Napi::Value Pwritev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  int64_t position = 0;
  int64_t alignment = 0;
  if (!GetWriteTarget(info, "parts must be a non-empty array of Uint8Arrays", &fd, &position, &alignment)) return env.Undefined();
  napi_value arr = info[1];
  uint32_t n = info[1].As<Napi::Array>().Length();
  std::vector<iovec> segs;
  segs.reserve(n);
  for (uint32_t k = 0; k < n; k++) {
    napi_value v = nullptr;
    napi_status st = napi_get_element(env, arr, k, &v);
    if (st == napi_pending_exception) return env.Undefined();
    napi_typedarray_type type = napi_uint8_array;
    size_t length = 0;
    void* data = nullptr;
    if (st != napi_ok || napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok || type != napi_uint8_array) {
      return ThrowType(env, "parts must be an array of Uint8Arrays");
    }
    if (length == 0) continue;
    // Parts that touch in memory (consecutive pieces of one slab) go as one iovec.
    if (!segs.empty() && static_cast<uint8_t*>(segs.back().iov_base) + segs.back().iov_len == data) {
      segs.back().iov_len += length;
    } else {
      segs.push_back(iovec{data, length});
    }
  }
  auto* w = new WritevWorker(env, fd, info[1], std::move(segs), position, static_cast<size_t>(alignment));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// pwriteXor(fd, members, position, alignment): Promise<bytesWritten>. Writes at `position` the
// XOR over `members` of each member's Uint8Arrays concatenated (every concatenation the same
// length): the parity of a RAID write whose data members are written in place. The XOR (one
// pass, as xorConcat) and the write both run on the pool thread, into and from that thread's
// aligned scratch buffer, so the main thread only issues the job and no parity buffer is
// handed around. The members array (and so its buffers) is held until the worker completes;
// the caller must not change the bytes meanwhile.
class XorWriteWorker : public PromiseWorker {
 public:
  XorWriteWorker(Napi::Env env, int fd, Napi::Value members, std::vector<std::vector<const uint8_t*>>&& ptrs,
                 std::vector<std::vector<size_t>>&& lens, size_t n, int64_t position, size_t alignment)
      : PromiseWorker(env, "pwrite"), fd_(fd), ptrs_(std::move(ptrs)), lens_(std::move(lens)), n_(n), position_(position), alignment_(alignment) {
    members_ = Napi::Persistent(members.As<Napi::Object>());
  }
  ~XorWriteWorker() override { std::free(owned_); }

 protected:
  void Execute() override {
    uint8_t* out = nullptr;
    // At least cache-line aligned, so the XOR's stores never straddle lines needlessly.
    size_t alignment = alignment_ > 64 ? alignment_ : 64;
    int rc = TakeThreadScratch((n_ + alignment - 1) / alignment * alignment, alignment, &out, &owned_);
    if (rc != 0) {
      errno_ = rc;
      return;
    }
    size_t memberCount = ptrs_.size();
    std::vector<const uint8_t* const*> segs(memberCount);
    std::vector<const size_t*> lenPtrs(memberCount);
    std::vector<size_t> counts(memberCount);
    for (size_t m = 0; m < memberCount; m++) {
      segs[m] = ptrs_[m].data();
      lenPtrs[m] = lens_[m].data();
      counts[m] = ptrs_[m].size();
    }
    twinblade::XorConcat(out, n_, segs.data(), lenPtrs.data(), counts.data(), memberCount);
    errno_ = PwriteAll(fd_, out, n_, position_, &done_);
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(done_)); }

 private:
  int fd_;
  std::vector<std::vector<const uint8_t*>> ptrs_;
  std::vector<std::vector<size_t>> lens_;
  size_t n_;
  int64_t position_;
  size_t alignment_;
  uint8_t* owned_ = nullptr;
  size_t done_ = 0;
  Napi::ObjectReference members_;
};

Napi::Value PwriteXor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  int64_t position = 0;
  int64_t alignment = 0;
  if (!GetWriteTarget(info, "members must be a non-empty array of arrays of Uint8Arrays", &fd, &position, &alignment)) return env.Undefined();
  Napi::Array arr = info[1].As<Napi::Array>();
  size_t memberCount = arr.Length();
  std::vector<std::vector<const uint8_t*>> ptrs(memberCount);
  std::vector<std::vector<size_t>> lens(memberCount);
  size_t n = 0;
  for (uint32_t m = 0; m < memberCount; m++) {
    size_t total = 0;
    if (!GetParts(env, arr.Get(m), "members", &ptrs[m], &lens[m], &total)) return env.Undefined();
    if (m == 0) n = total;
    if (total != n) return ThrowRange(env, "every member's parts must add up to the same length");
  }
  if (n == 0) return ThrowRange(env, "members must not be empty");
  auto* w = new XorWriteWorker(env, fd, info[1], std::move(ptrs), std::move(lens), n, position, static_cast<size_t>(alignment));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value Version(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), 6); }

// tuneMalloc(mmapThresholdBytes, trimThresholdBytes) -> boolean: glibc's allocator keeps freed
// memory for reuse instead of handing it back to the kernel. Its defaults adapt the mmap
// threshold to the largest chunk freed so far and give the top of the heap back once more than
// twice that is free, so a daemon that allocates and frees a 1 MiB record per WRITE keeps
// returning memory and faulting it in again (a fault per 4 KiB page). False where the C library
// is not glibc or refuses a value (nothing changed then).
// adjustExternalMemory(deltaBytes) -> number: napi_adjust_external_memory, V8's count of memory
// outside its heap that JavaScript objects keep alive (it starts full collections as the count
// grows). Returns the count after the change. See gcAccounting in native/index.ts.
Napi::Value AdjustExternalMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return ThrowType(env, "adjustExternalMemory(deltaBytes): a number");
  const double delta = info[0].As<Napi::Number>().DoubleValue();
  if (!(delta >= -9007199254740991.0 && delta <= 9007199254740991.0) || delta != static_cast<double>(static_cast<int64_t>(delta))) {
    return ThrowRange(env, "adjustExternalMemory: deltaBytes must be a safe integer");
  }
  int64_t result = 0;
  if (napi_adjust_external_memory(env, static_cast<int64_t>(delta), &result) != napi_ok) return ThrowRange(env, "adjustExternalMemory: refused");
  return Napi::Number::New(env, static_cast<double>(result));
}

Napi::Value TuneMalloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) return ThrowType(env, "tuneMalloc(mmapThresholdBytes, trimThresholdBytes): two numbers");
  const double mmapThreshold = info[0].As<Napi::Number>().DoubleValue();
  const double trimThreshold = info[1].As<Napi::Number>().DoubleValue();
  if (!(mmapThreshold >= 0 && mmapThreshold <= INT_MAX && trimThreshold >= 0 && trimThreshold <= INT_MAX)) return ThrowRange(env, "tuneMalloc: thresholds must be 0..2^31-1 bytes");
#if defined(__GLIBC__)
  const bool ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmapThreshold)) == 1 && mallopt(M_TRIM_THRESHOLD, static_cast<int>(trimThreshold)) == 1;
  return Napi::Boolean::New(env, ok);
#else
  return Napi::Boolean::New(env, false);
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("version", Napi::Function::New(env, Version));
  exports.Set("tuneMalloc", Napi::Function::New(env, TuneMalloc));
  exports.Set("adjustExternalMemory", Napi::Function::New(env, AdjustExternalMemory));
  exports.Set("allocAligned", Napi::Function::New(env, AllocAligned));
  exports.Set("isAligned", Napi::Function::New(env, IsAligned));
  exports.Set("openDirect", Napi::Function::New(env, OpenDirect));
  exports.Set("blockDeviceInfo", Napi::Function::New(env, BlockDeviceInfo));
  exports.Set("pread", Napi::Function::New(env, Pread));
  exports.Set("pwrite", Napi::Function::New(env, Pwrite));
  exports.Set("fdatasync", Napi::Function::New(env, Fdatasync));
  exports.Set("mmap", Napi::Function::New(env, Mmap));
  exports.Set("munmap", Napi::Function::New(env, Munmap));
  exports.Set("msync", Napi::Function::New(env, Msync));
  exports.Set("storeFence", Napi::Function::New(env, StoreFence));
  exports.Set("crc32c", Napi::Function::New(env, Crc32c));
  exports.Set("crc32cPortable", Napi::Function::New(env, Crc32cPortable));
  exports.Set("crc32cImplementation", Napi::String::New(env, twinblade::Crc32cImplementation()));
  exports.Set("xorInto", Napi::Function::New(env, XorIntoFn));
  exports.Set("xorAll", Napi::Function::New(env, XorAllFn));
  exports.Set("splitStripes", Napi::Function::New(env, SplitStripesFn));
  exports.Set("gatherStripes", Napi::Function::New(env, GatherStripesFn));
  exports.Set("gatherStripesAsync", Napi::Function::New(env, GatherStripesAsyncFn));
  exports.Set("xorConcat", Napi::Function::New(env, XorConcatFn));
  exports.Set("pwritev", Napi::Function::New(env, Pwritev));
  exports.Set("pwriteXor", Napi::Function::New(env, PwriteXor));
  exports.Set("xorImplementation", Napi::String::New(env, twinblade::XorImplementation()));
  exports.Set("openpty", Napi::Function::New(env, OpenPty));
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(sysconf(_SC_PAGESIZE))));
  return exports;
}

}  // namespace

NODE_API_MODULE(twinblade_native, Init)
