// clarifx-ofx-testhost: a small OpenFX host that drives a plugin bundle the way compositing hosts do.
//
// It dlopens the bundle (RTLD_LOCAL, as hosts do), provides the property, image effect, parameter,
// memory, multi-thread and message suites, and sends the actions in the OFX order: Load, Describe,
// DescribeInContext, CreateInstance, GetClipPreferences, GetRegionOfDefinition, GetRegionsOfInterest,
// GetFramesNeeded, IsIdentity, Begin/Render/EndSequenceRender, DestroyInstance, Unload, then dlclose.
// Profiles mimic hosts: resolve (no multi-resolution, no tiles, CUDA offered), nuke (float only,
// multi-resolution, Python started by the host before the plugin loads), natron (multi-resolution,
// General context, OfxSetHost). Source frames come from raw float32 RGBA files (top-down, as numpy
// writes them); the output is written the same way, and a JSON report says what every action returned.
//
// Usage: clarifx-ofx-testhost --bundle DIR --effect ID --input PREFIX --width W --height H --output PREFIX
//          --report FILE [--profile resolve|nuke|natron] [--param NAME=VALUE]... [--time T] [--first F --last L]
//          [--render-scale S] [--depth float|half|byte] [--components RGBA|RGB] [--premult straight|premultiplied]
//          [--negative-row-bytes] [--threads N] [--cycles N] [--cuda] [--python-lib PATH]
//          [--clip-input NAME=PREFIX] [--clip-range NAME=FIRST:LAST] [--missing-clip NAME=null|failed|unconnected]
//          [--abort-after N] [--progress] [--progress-cancel-at FRACTION]
// A plugin that answers IsIdentity gets no Render: the host copies the named clip's image, as hosts do.
// --missing-clip mimics hosts that have no image for a clip: Resolve hands unconnected clips as NULL
// images (null: kOfxStatOK and a NULL handle), others fail the fetch (failed), or say so (unconnected).
// --abort-after N: the abort function says "abort" from its (N+1)th call on. --progress offers the
// progress suite (its calls are reported); --progress-cancel-at: progressUpdate answers kOfxStatReplyNo
// (the user pressed Cancel) from that fraction on.
// Exit status: 0 when the host ran to the end (whatever the plugin returned), 2 on bad usage,
// 77 when --cuda is asked for and no CUDA device is usable.
#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "clarifx_ofx/ofx_api.h"

#ifdef CLARIFX_TESTHOST_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

// ---------------------------------------------------------------- properties

std::atomic<long> g_live_propsets{0};
std::atomic<long> g_images_out{0};

struct Property {
  char type = 0;  // 'p', 's', 'd', 'i'
  std::vector<void *> p;
  std::vector<std::string> s;
  std::vector<double> d;
  std::vector<int> i;
  size_t size() const { return type == 'p' ? p.size() : type == 's' ? s.size() : type == 'd' ? d.size() : i.size(); }
};

struct PropSet {
  std::map<std::string, Property> props;
  std::mutex mutex;
  PropSet() { ++g_live_propsets; }
  ~PropSet() { --g_live_propsets; }
  PropSet(const PropSet &) = delete;
};

PropSet *ps(OfxPropertySetHandle h) { return reinterpret_cast<PropSet *>(h); }
OfxPropertySetHandle handle(PropSet *p) { return reinterpret_cast<OfxPropertySetHandle>(p); }

template <typename T>
std::vector<T> &slot(Property &p);
template <>
std::vector<void *> &slot(Property &p) { return p.p; }
template <>
std::vector<std::string> &slot(Property &p) { return p.s; }
template <>
std::vector<double> &slot(Property &p) { return p.d; }
template <>
std::vector<int> &slot(Property &p) { return p.i; }

// Setting creates the property (plugins may set properties a host does not predefine); a type clash is an error.
template <typename T, typename V>
OfxStatus prop_set(OfxPropertySetHandle h, const char *name, int index, V value, char type) {
  if (!h || !name || index < 0) return kOfxStatErrBadHandle;
  std::lock_guard<std::mutex> lock(ps(h)->mutex);
  Property &p = ps(h)->props[name];
  if (p.type && p.type != type) return kOfxStatErrValue;
  p.type = type;
  auto &v = slot<T>(p);
  if (static_cast<size_t>(index) >= v.size()) v.resize(index + 1);
  v[index] = T(value);
  return kOfxStatOK;
}

template <typename T, typename V>
OfxStatus prop_get(OfxPropertySetHandle h, const char *name, int index, V *out, char type) {
  if (!h || !name || !out) return kOfxStatErrBadHandle;
  std::lock_guard<std::mutex> lock(ps(h)->mutex);
  auto it = ps(h)->props.find(name);
  if (it == ps(h)->props.end()) return kOfxStatErrUnknown;
  if (it->second.type != type) return kOfxStatErrValue;
  auto &v = slot<T>(it->second);
  if (index < 0 || static_cast<size_t>(index) >= v.size()) return kOfxStatErrBadIndex;
  if constexpr (std::is_same_v<T, std::string>) {
    *out = const_cast<char *>(v[index].c_str());
  } else {
    *out = v[index];
  }
  return kOfxStatOK;
}

OfxStatus propSetPointer(OfxPropertySetHandle h, const char *n, int i, void *v) { return prop_set<void *>(h, n, i, v, 'p'); }
OfxStatus propSetString(OfxPropertySetHandle h, const char *n, int i, const char *v) {
  return prop_set<std::string>(h, n, i, v ? v : "", 's');
}
OfxStatus propSetDouble(OfxPropertySetHandle h, const char *n, int i, double v) { return prop_set<double>(h, n, i, v, 'd'); }
OfxStatus propSetInt(OfxPropertySetHandle h, const char *n, int i, int v) { return prop_set<int>(h, n, i, v, 'i'); }
OfxStatus propSetPointerN(OfxPropertySetHandle h, const char *n, int c, void *const *v) {
  for (int k = 0; k < c; ++k) if (OfxStatus s = propSetPointer(h, n, k, v[k])) return s;
  return kOfxStatOK;
}
OfxStatus propSetStringN(OfxPropertySetHandle h, const char *n, int c, const char *const *v) {
  for (int k = 0; k < c; ++k) if (OfxStatus s = propSetString(h, n, k, v[k])) return s;
  return kOfxStatOK;
}
OfxStatus propSetDoubleN(OfxPropertySetHandle h, const char *n, int c, const double *v) {
  if (h && n) {  // N-setters replace the whole value (a shorter list shrinks it)
    std::lock_guard<std::mutex> lock(ps(h)->mutex);
    auto it = ps(h)->props.find(n);
    if (it != ps(h)->props.end() && it->second.type == 'd') it->second.d.clear();
  }
  for (int k = 0; k < c; ++k) if (OfxStatus s = propSetDouble(h, n, k, v[k])) return s;
  return kOfxStatOK;
}
OfxStatus propSetIntN(OfxPropertySetHandle h, const char *n, int c, const int *v) {
  for (int k = 0; k < c; ++k) if (OfxStatus s = propSetInt(h, n, k, v[k])) return s;
  return kOfxStatOK;
}
OfxStatus propGetPointer(OfxPropertySetHandle h, const char *n, int i, void **v) { return prop_get<void *>(h, n, i, v, 'p'); }
OfxStatus propGetString(OfxPropertySetHandle h, const char *n, int i, char **v) { return prop_get<std::string>(h, n, i, v, 's'); }
OfxStatus propGetDouble(OfxPropertySetHandle h, const char *n, int i, double *v) { return prop_get<double>(h, n, i, v, 'd'); }
OfxStatus propGetInt(OfxPropertySetHandle h, const char *n, int i, int *v) { return prop_get<int>(h, n, i, v, 'i'); }
OfxStatus propGetPointerN(OfxPropertySetHandle h, const char *n, int c, void **v) {
  for (int k = 0; k < c; ++k) if (OfxStatus s = propGetPointer(h, n, k, &v[k])) return s;
  return kOfxStatOK;
}
OfxStatus propGetStringN(OfxPropertySetHandle h, const char *n, int c, char **v) {
  for (int k = 0; k < c; ++k) if (OfxStatus s = propGetString(h, n, k, &v[k])) return s;
  return kOfxStatOK;
}
OfxStatus propGetDoubleN(OfxPropertySetHandle h, const char *n, int c, double *v) {
  for (int k = 0; k < c; ++k) if (OfxStatus s = propGetDouble(h, n, k, &v[k])) return s;
  return kOfxStatOK;
}
OfxStatus propGetIntN(OfxPropertySetHandle h, const char *n, int c, int *v) {
  for (int k = 0; k < c; ++k) if (OfxStatus s = propGetInt(h, n, k, &v[k])) return s;
  return kOfxStatOK;
}
OfxStatus propReset(OfxPropertySetHandle h, const char *n) {
  if (!h || !n) return kOfxStatErrBadHandle;
  std::lock_guard<std::mutex> lock(ps(h)->mutex);
  return ps(h)->props.erase(n) ? kOfxStatOK : kOfxStatErrUnknown;
}
OfxStatus propGetDimension(OfxPropertySetHandle h, const char *n, int *count) {
  if (!h || !n || !count) return kOfxStatErrBadHandle;
  std::lock_guard<std::mutex> lock(ps(h)->mutex);
  auto it = ps(h)->props.find(n);
  if (it == ps(h)->props.end()) return kOfxStatErrUnknown;
  *count = static_cast<int>(it->second.size());
  return kOfxStatOK;
}

const OfxPropertySuiteV1 kPropertySuite = {
    propSetPointer, propSetString, propSetDouble, propSetInt, propSetPointerN, propSetStringN, propSetDoubleN,
    propSetIntN, propGetPointer, propGetString, propGetDouble, propGetInt, propGetPointerN, propGetStringN,
    propGetDoubleN, propGetIntN, propReset, propGetDimension};

std::string sget(PropSet &p, const char *n, int i = 0) {
  char *v = nullptr;
  return propGetString(handle(&p), n, i, &v) == kOfxStatOK ? v : "";
}
int iget(PropSet &p, const char *n, int fallback = 0) {
  int v = fallback;
  propGetInt(handle(&p), n, 0, &v);
  return v;
}
int dimension(PropSet &p, const char *n) {
  int c = 0;
  propGetDimension(handle(&p), n, &c);
  return c;
}

// ---------------------------------------------------------------- options, profile, pixels

struct Options {
  std::string bundle, effect, input, output, report, profile = "nuke", depth = "float", components = "RGBA";
  std::string premult = "premultiplied", python_lib;
  std::vector<std::pair<std::string, std::string>> params;
  int width = 0, height = 0, first = 1, last = 1, threads = 1, cycles = 1;
  double time = 1, render_scale = 1;
  bool negative_row_bytes = false, cuda = false;
  std::map<std::string, std::string> clip_inputs, missing;  // clip name -> raw-file prefix, missing mode
  std::map<std::string, std::pair<int, int>> clip_ranges;    // clip name -> frame range (default first..last)
  long abort_after = -1;                                     // -1: never abort
  bool progress = false;
  double progress_cancel_at = 2;                             // > 1: never cancel
};
Options g_opt;
bool g_multires = true;

std::vector<std::string> g_messages;
std::mutex g_messages_mutex;

// Source frame t at render scale s, as float RGBA top-down (box-filtered when s = 1/k).
std::vector<float> load_frame(const std::string &prefix, int t, int &w, int &h) {
  std::string path = prefix + "." + std::to_string(t) + ".raw";
  std::ifstream in(path, std::ios::binary);
  std::vector<float> full(static_cast<size_t>(g_opt.width) * g_opt.height * 4);
  if (!in.read(reinterpret_cast<char *>(full.data()), full.size() * sizeof(float))) {
    std::fprintf(stderr, "testhost: cannot read %s\n", path.c_str());
    return {};
  }
  int k = static_cast<int>(std::lround(1.0 / g_opt.render_scale));
  w = g_opt.width / k;
  h = g_opt.height / k;
  if (k == 1) return full;
  std::vector<float> out(static_cast<size_t>(w) * h * 4, 0.f);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 4; ++c) {
        float sum = 0;
        for (int j = 0; j < k; ++j)
          for (int i = 0; i < k; ++i) sum += full[((static_cast<size_t>(y) * k + j) * g_opt.width + x * k + i) * 4 + c];
        out[(static_cast<size_t>(y) * w + x) * 4 + c] = sum / static_cast<float>(k * k);
      }
  return out;
}

uint16_t to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, mant = x & 0x7fffff;
  int exp = static_cast<int>((x >> 23) & 0xff) - 127 + 15;
  if (((x >> 23) & 0xff) == 0xff) return static_cast<uint16_t>(sign | 0x7c00 | (mant ? 0x200 : 0));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00);
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000;
    uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t half = mant >> shift, rest = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13), rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;  // round to nearest even
  return static_cast<uint16_t>(half);
}

float from_half(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, x;
  if (exp == 0) {
    if (!mant) {
      x = sign;
    } else {
      int e = -1;
      do { ++e; mant <<= 1; } while (!(mant & 0x400));
      x = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000 | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

int bytes_per_sample() { return g_opt.depth == "float" ? 4 : g_opt.depth == "half" ? 2 : 1; }
int channels() { return g_opt.components == "RGB" ? 3 : 4; }
const char *ofx_depth() {
  return g_opt.depth == "float" ? kOfxBitDepthFloat : g_opt.depth == "half" ? kOfxBitDepthHalf : kOfxBitDepthByte;
}

// A host image buffer: rows bottom-up, padded, optionally laid out with negative row bytes; on the GPU
// with --cuda.
struct Buffer {
  std::vector<unsigned char> host;
  void *device = nullptr;
  OfxRectI bounds{};
  int row_bytes = 0;
  size_t bytes() const { return host.size(); }
  // The address of row bounds.y1 (the bottom row), which OFX calls the image data.
  void *data() {
    unsigned char *base = device ? static_cast<unsigned char *>(device) : host.data();
    return row_bytes < 0 ? base + static_cast<size_t>(bounds.y2 - bounds.y1 - 1) * -row_bytes : base;
  }
  unsigned char *row(int y) {  // y in pixels, bottom-up, in the host copy
    unsigned char *bottom = host.data() + (row_bytes < 0 ? static_cast<size_t>(bounds.y2 - bounds.y1 - 1) * -row_bytes : 0);
    return bottom + static_cast<ptrdiff_t>(y - bounds.y1) * row_bytes;
  }
  void allocate(OfxRectI b) {
    bounds = b;
    int w = b.x2 - b.x1, h = b.y2 - b.y1;
    int stride = w * channels() * bytes_per_sample() + 16;  // padded rows: row bytes are not width * pixel size
    row_bytes = g_opt.negative_row_bytes ? -stride : stride;
    host.assign(static_cast<size_t>(stride) * std::max(h, 0), 0xAB);  // poison
    if (g_opt.depth == "float") {
      float nan = std::nanf("");
      for (size_t k = 0; k + 4 <= host.size(); k += 4) std::memcpy(&host[k], &nan, 4);
    }
  }
  ~Buffer() {
#ifdef CLARIFX_TESTHOST_CUDA
    if (device) cudaFree(device);
#endif
  }
  void upload() {
#ifdef CLARIFX_TESTHOST_CUDA
    if (g_opt.cuda) {
      if (!device) cudaMalloc(&device, bytes());
      cudaMemcpy(device, host.data(), bytes(), cudaMemcpyHostToDevice);
    }
#endif
  }
  void download() {
#ifdef CLARIFX_TESTHOST_CUDA
    if (device) cudaMemcpy(host.data(), device, bytes(), cudaMemcpyDeviceToHost);
#endif
  }
  void set(int x, int y, int c, float v) {
    unsigned char *p = row(y) + (static_cast<size_t>(x - bounds.x1) * channels() + c) * bytes_per_sample();
    if (g_opt.depth == "float") std::memcpy(p, &v, 4);
    else if (g_opt.depth == "half") { uint16_t hv = to_half(v); std::memcpy(p, &hv, 2); }
    else *p = static_cast<unsigned char>(std::lround(std::min(1.f, std::max(0.f, v)) * 255.f));
  }
  float get(int x, int y, int c) {
    unsigned char *p = row(y) + (static_cast<size_t>(x - bounds.x1) * channels() + c) * bytes_per_sample();
    if (g_opt.depth == "float") { float v; std::memcpy(&v, p, 4); return v; }
    if (g_opt.depth == "half") { uint16_t hv; std::memcpy(&hv, p, 2); return from_half(hv); }
    return *p / 255.f;
  }
};

// ---------------------------------------------------------------- effects, clips, params

struct Param {
  PropSet props;
  std::string type, name;
  double d = 0;
  int i = 0;
  std::string s;
};

struct ParamSet {
  PropSet props;
  std::map<std::string, std::unique_ptr<Param>> params;
  std::vector<std::string> order;
};

struct Effect;
struct Clip {
  PropSet props;
  std::string name;
  Effect *effect = nullptr;
};

struct Effect {
  PropSet props;
  ParamSet params;
  std::map<std::string, std::unique_ptr<Clip>> clips;
  std::vector<std::string> clip_order;
  OfxRectD output_rod{};
  Buffer *output = nullptr;  // during Render
};

Effect *fx(OfxImageEffectHandle h) { return reinterpret_cast<Effect *>(h); }

OfxRectD source_rod() { return OfxRectD{0, 0, static_cast<double>(g_opt.width), static_cast<double>(g_opt.height)}; }

OfxStatus getPropertySet(OfxImageEffectHandle e, OfxPropertySetHandle *p) {
  if (!e || !p) return kOfxStatErrBadHandle;
  *p = handle(&fx(e)->props);
  return kOfxStatOK;
}
OfxStatus getParamSet(OfxImageEffectHandle e, OfxParamSetHandle *p) {
  if (!e || !p) return kOfxStatErrBadHandle;
  *p = reinterpret_cast<OfxParamSetHandle>(&fx(e)->params);
  return kOfxStatOK;
}
OfxStatus clipDefine(OfxImageEffectHandle e, const char *name, OfxPropertySetHandle *p) {
  if (!e || !name) return kOfxStatErrBadHandle;
  auto &c = fx(e)->clips[name];
  if (!c) {
    c = std::make_unique<Clip>();
    c->name = name;
    c->effect = fx(e);
    fx(e)->clip_order.push_back(name);
  }
  if (p) *p = handle(&c->props);
  return kOfxStatOK;
}
OfxStatus clipGetHandle(OfxImageEffectHandle e, const char *name, OfxImageClipHandle *clip, OfxPropertySetHandle *p) {
  if (!e || !name || !clip) return kOfxStatErrBadHandle;
  auto it = fx(e)->clips.find(name);
  if (it == fx(e)->clips.end()) return kOfxStatErrUnknown;
  *clip = reinterpret_cast<OfxImageClipHandle>(it->second.get());
  if (p) *p = handle(&it->second->props);
  return kOfxStatOK;
}
OfxStatus clipGetPropertySet(OfxImageClipHandle clip, OfxPropertySetHandle *p) {
  if (!clip || !p) return kOfxStatErrBadHandle;
  *p = handle(&reinterpret_cast<Clip *>(clip)->props);
  return kOfxStatOK;
}

std::atomic<long> g_source_fetches{0};

std::pair<int, int> clip_range(const std::string &name) {
  auto it = g_opt.clip_ranges.find(name);
  return it != g_opt.clip_ranges.end() ? it->second : std::make_pair(g_opt.first, g_opt.last);
}

struct HostImage {
  PropSet props;
  std::unique_ptr<Buffer> owned;  // source images own their pixels; the output's belong to the render
};

void describe_image(HostImage &img, Buffer &b, const char *premult) {
  OfxPropertySetHandle h = handle(&img.props);
  propSetString(h, kOfxPropType, 0, kOfxTypeImage);
  propSetPointer(h, kOfxImagePropData, 0, b.data());
  int bounds[4] = {b.bounds.x1, b.bounds.y1, b.bounds.x2, b.bounds.y2};
  propSetIntN(h, kOfxImagePropBounds, 4, bounds);
  propSetIntN(h, kOfxImagePropRegionOfDefinition, 4, bounds);
  propSetInt(h, kOfxImagePropRowBytes, 0, b.row_bytes);
  propSetString(h, kOfxImageEffectPropPixelDepth, 0, ofx_depth());
  propSetString(h, kOfxImageEffectPropComponents, 0, g_opt.components == "RGB" ? kOfxImageComponentRGB : kOfxImageComponentRGBA);
  propSetString(h, kOfxImageEffectPropPreMultiplication, 0, premult);
  propSetDouble(h, kOfxImagePropPixelAspectRatio, 0, 1.0);
  propSetDouble(h, kOfxImageEffectPropRenderScale, 0, g_opt.render_scale);
  propSetDouble(h, kOfxImageEffectPropRenderScale, 1, g_opt.render_scale);
  propSetString(h, kOfxImagePropField, 0, kOfxImageFieldNone);
}

const char *source_premult() {
  if (g_opt.components == "RGB") return kOfxImageOpaque;
  return g_opt.premult == "straight" ? kOfxImageUnPreMultiplied : kOfxImagePreMultiplied;
}

OfxStatus clipGetImage(OfxImageClipHandle clip, OfxTime t, const OfxRectD *, OfxPropertySetHandle *out) {
  if (!clip || !out) return kOfxStatErrBadHandle;
  Clip *c = reinterpret_cast<Clip *>(clip);
  auto img = std::make_unique<HostImage>();
  if (c->name == kOfxImageEffectOutputClipName) {
    if (!c->effect->output) return kOfxStatFailed;
    describe_image(*img, *c->effect->output, source_premult());
  } else {
    ++g_source_fetches;
    auto missing = g_opt.missing.find(c->name);
    if (missing != g_opt.missing.end()) {
      *out = nullptr;
      return missing->second == "null" ? kOfxStatOK : kOfxStatFailed;
    }
    int ti = static_cast<int>(std::lround(t));
    auto [first, last] = clip_range(c->name);
    if (ti < first || ti > last) return kOfxStatFailed;  // outside the clip: no image
    int w = 0, h = 0;
    auto input = g_opt.clip_inputs.find(c->name);
    std::vector<float> pixels = load_frame(input != g_opt.clip_inputs.end() ? input->second : g_opt.input, ti, w, h);
    if (pixels.empty()) return kOfxStatFailed;
    img->owned = std::make_unique<Buffer>();
    Buffer &b = *img->owned;
    b.allocate(OfxRectI{0, 0, w, h});
    for (int y = 0; y < h; ++y)  // the file is top-down, OFX rows bottom-up
      for (int x = 0; x < w; ++x)
        for (int k = 0; k < channels(); ++k) b.set(x, y, k, pixels[(static_cast<size_t>(h - 1 - y) * w + x) * 4 + k]);
    b.upload();
    describe_image(*img, b, source_premult());
  }
  ++g_images_out;
  *out = handle(&img.release()->props);
  return kOfxStatOK;
}
OfxStatus clipReleaseImage(OfxPropertySetHandle h) {
  if (!h) return kOfxStatErrBadHandle;
  --g_images_out;
  delete reinterpret_cast<HostImage *>(h);  // props is HostImage's first member
  return kOfxStatOK;
}
OfxStatus clipGetRegionOfDefinition(OfxImageClipHandle clip, OfxTime, OfxRectD *rod) {
  if (!clip || !rod) return kOfxStatErrBadHandle;
  Clip *c = reinterpret_cast<Clip *>(clip);
  *rod = c->name == kOfxImageEffectOutputClipName ? c->effect->output_rod : source_rod();
  return kOfxStatOK;
}
std::atomic<long> g_abort_calls{0};
int abortRender(OfxImageEffectHandle) {
  long n = ++g_abort_calls;
  return g_opt.abort_after >= 0 && n > g_opt.abort_after ? 1 : 0;
}
OfxStatus imageMemoryAlloc(OfxImageEffectHandle, size_t n, OfxImageMemoryHandle *m) {
  if (!m) return kOfxStatErrBadHandle;
  *m = reinterpret_cast<OfxImageMemoryHandle>(std::malloc(n ? n : 1));
  return *m ? kOfxStatOK : kOfxStatErrMemory;
}
OfxStatus imageMemoryFree(OfxImageMemoryHandle m) { std::free(m); return kOfxStatOK; }
OfxStatus imageMemoryLock(OfxImageMemoryHandle m, void **p) { if (!p) return kOfxStatErrBadHandle; *p = m; return kOfxStatOK; }
OfxStatus imageMemoryUnlock(OfxImageMemoryHandle) { return kOfxStatOK; }

const OfxImageEffectSuiteV1 kEffectSuite = {getPropertySet, getParamSet, clipDefine, clipGetHandle, clipGetPropertySet,
                                             clipGetImage, clipReleaseImage, clipGetRegionOfDefinition, abortRender,
                                             imageMemoryAlloc, imageMemoryFree, imageMemoryLock, imageMemoryUnlock};

// ---- parameters (the value getters and setters are C variadic, as the specification declares them)

ParamSet *pset(OfxParamSetHandle h) { return reinterpret_cast<ParamSet *>(h); }
Param *prm(OfxParamHandle h) { return reinterpret_cast<Param *>(h); }

OfxStatus paramDefine(OfxParamSetHandle set, const char *type, const char *name, OfxPropertySetHandle *props) {
  if (!set || !type || !name) return kOfxStatErrBadHandle;
  if (pset(set)->params.count(name)) return kOfxStatErrExists;
  auto p = std::make_unique<Param>();
  p->type = type;
  p->name = name;
  propSetString(handle(&p->props), kOfxParamPropType, 0, type);
  propSetString(handle(&p->props), kOfxPropName, 0, name);
  if (props) *props = handle(&p->props);
  pset(set)->order.push_back(name);
  pset(set)->params[name] = std::move(p);
  return kOfxStatOK;
}
OfxStatus paramGetHandle(OfxParamSetHandle set, const char *name, OfxParamHandle *param, OfxPropertySetHandle *props) {
  if (!set || !name || !param) return kOfxStatErrBadHandle;
  auto it = pset(set)->params.find(name);
  if (it == pset(set)->params.end()) return kOfxStatErrUnknown;
  *param = reinterpret_cast<OfxParamHandle>(it->second.get());
  if (props) *props = handle(&it->second->props);
  return kOfxStatOK;
}
OfxStatus paramSetGetPropertySet(OfxParamSetHandle set, OfxPropertySetHandle *p) {
  if (!set || !p) return kOfxStatErrBadHandle;
  *p = handle(&pset(set)->props);
  return kOfxStatOK;
}
OfxStatus paramGetPropertySet(OfxParamHandle param, OfxPropertySetHandle *p) {
  if (!param || !p) return kOfxStatErrBadHandle;
  *p = handle(&prm(param)->props);
  return kOfxStatOK;
}
OfxStatus get_value(Param *p, va_list ap) {
  if (p->type == kOfxParamTypeDouble) *va_arg(ap, double *) = p->d;
  else if (p->type == kOfxParamTypeString) *va_arg(ap, const char **) = p->s.c_str();
  else if (p->type == kOfxParamTypeInteger || p->type == kOfxParamTypeBoolean || p->type == kOfxParamTypeChoice)
    *va_arg(ap, int *) = p->i;
  else return kOfxStatErrUnsupported;
  return kOfxStatOK;
}
OfxStatus set_value(Param *p, va_list ap) {
  if (p->type == kOfxParamTypeDouble) p->d = va_arg(ap, double);
  else if (p->type == kOfxParamTypeString) p->s = va_arg(ap, const char *);
  else if (p->type == kOfxParamTypeInteger || p->type == kOfxParamTypeBoolean || p->type == kOfxParamTypeChoice)
    p->i = va_arg(ap, int);
  else return kOfxStatErrUnsupported;
  return kOfxStatOK;
}
OfxStatus paramGetValue(OfxParamHandle h, ...) {
  if (!h) return kOfxStatErrBadHandle;
  va_list ap;
  va_start(ap, h);
  OfxStatus s = get_value(prm(h), ap);
  va_end(ap);
  return s;
}
OfxStatus paramGetValueAtTime(OfxParamHandle h, OfxTime time, ...) {
  if (!h) return kOfxStatErrBadHandle;
  va_list ap;
  va_start(ap, time);
  OfxStatus s = get_value(prm(h), ap);  // values do not animate in this host
  va_end(ap);
  return s;
}
OfxStatus paramGetDerivative(OfxParamHandle, OfxTime, ...) { return kOfxStatErrUnsupported; }
OfxStatus paramGetIntegral(OfxParamHandle, OfxTime, OfxTime, ...) { return kOfxStatErrUnsupported; }
OfxStatus paramSetValue(OfxParamHandle h, ...) {
  if (!h) return kOfxStatErrBadHandle;
  va_list ap;
  va_start(ap, h);
  OfxStatus s = set_value(prm(h), ap);
  va_end(ap);
  return s;
}
OfxStatus paramSetValueAtTime(OfxParamHandle h, OfxTime time, ...) {
  if (!h) return kOfxStatErrBadHandle;
  va_list ap;
  va_start(ap, time);
  OfxStatus s = set_value(prm(h), ap);
  va_end(ap);
  return s;
}
OfxStatus paramGetNumKeys(OfxParamHandle, unsigned int *n) { if (n) *n = 0; return kOfxStatOK; }
OfxStatus paramGetKeyTime(OfxParamHandle, unsigned int, OfxTime *) { return kOfxStatErrBadIndex; }
OfxStatus paramGetKeyIndex(OfxParamHandle, OfxTime, int, int *) { return kOfxStatFailed; }
OfxStatus paramDeleteKey(OfxParamHandle, OfxTime) { return kOfxStatErrBadIndex; }
OfxStatus paramDeleteAllKeys(OfxParamHandle) { return kOfxStatOK; }
OfxStatus paramCopy(OfxParamHandle, OfxParamHandle, OfxTime, const OfxRangeD *) { return kOfxStatErrUnsupported; }
OfxStatus paramEditBegin(OfxParamSetHandle, const char *) { return kOfxStatOK; }
OfxStatus paramEditEnd(OfxParamSetHandle) { return kOfxStatOK; }

const OfxParameterSuiteV1 kParameterSuite = {
    paramDefine, paramGetHandle, paramSetGetPropertySet, paramGetPropertySet, paramGetValue,
    paramGetValueAtTime, paramGetDerivative, paramGetIntegral, paramSetValue, paramSetValueAtTime,
    paramGetNumKeys, paramGetKeyTime, paramGetKeyIndex, paramDeleteKey, paramDeleteAllKeys, paramCopy,
    paramEditBegin, paramEditEnd};

// ---- memory, threads, messages

OfxStatus memoryAlloc(void *, size_t n, void **p) {
  if (!p) return kOfxStatErrBadHandle;
  *p = std::malloc(n ? n : 1);
  return *p ? kOfxStatOK : kOfxStatErrMemory;
}
OfxStatus memoryFree(void *p) { std::free(p); return kOfxStatOK; }
const OfxMemorySuiteV1 kMemorySuite = {memoryAlloc, memoryFree};

thread_local unsigned t_thread_index = 0;
thread_local bool t_spawned = false;
OfxStatus multiThread(OfxThreadFunctionV1 func, unsigned n, void *arg) {
  if (!func) return kOfxStatErrBadHandle;
  std::vector<std::thread> pool;
  for (unsigned k = 0; k < n; ++k)
    pool.emplace_back([=] { t_thread_index = k; t_spawned = true; func(k, n, arg); });
  for (auto &t : pool) t.join();
  return kOfxStatOK;
}
OfxStatus multiThreadNumCPUs(unsigned *n) { if (n) *n = std::max(1u, std::thread::hardware_concurrency()); return kOfxStatOK; }
OfxStatus multiThreadIndex(unsigned *i) { if (i) *i = t_thread_index; return kOfxStatOK; }
int multiThreadIsSpawnedThread() { return t_spawned; }
OfxStatus mutexCreate(OfxMutexHandle *m, int) { if (!m) return kOfxStatErrBadHandle; *m = reinterpret_cast<OfxMutexHandle>(new std::recursive_mutex); return kOfxStatOK; }
OfxStatus mutexDestroy(const OfxMutexHandle m) { delete reinterpret_cast<std::recursive_mutex *>(m); return kOfxStatOK; }
OfxStatus mutexLock(const OfxMutexHandle m) { reinterpret_cast<std::recursive_mutex *>(m)->lock(); return kOfxStatOK; }
OfxStatus mutexUnLock(const OfxMutexHandle m) { reinterpret_cast<std::recursive_mutex *>(m)->unlock(); return kOfxStatOK; }
OfxStatus mutexTryLock(const OfxMutexHandle m) { return reinterpret_cast<std::recursive_mutex *>(m)->try_lock() ? kOfxStatOK : kOfxStatFailed; }
const OfxMultiThreadSuiteV1 kThreadSuite = {multiThread, multiThreadNumCPUs, multiThreadIndex, multiThreadIsSpawnedThread,
                                            mutexCreate, mutexDestroy, mutexLock, mutexUnLock, mutexTryLock};

OfxStatus vmessage(const char *type, const char *id, const char *format, va_list ap) {
  char text[4096];
  std::vsnprintf(text, sizeof text, format ? format : "", ap);
  std::lock_guard<std::mutex> lock(g_messages_mutex);
  g_messages.push_back(std::string(type ? type : "") + "|" + (id ? id : "") + "|" + text);
  return kOfxStatOK;
}
OfxStatus message(void *, const char *type, const char *id, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  OfxStatus s = vmessage(type, id, format, ap);
  va_end(ap);
  return s;
}
OfxStatus clearPersistentMessage(void *) { return kOfxStatOK; }
const OfxMessageSuiteV2 kMessageSuite = {message, message, clearPersistentMessage};

std::vector<std::string> g_progress_log;
std::mutex g_progress_mutex;
OfxStatus progressStart(void *effect, const char *label) {
  if (!effect) return kOfxStatErrBadHandle;
  std::lock_guard<std::mutex> lock(g_progress_mutex);
  g_progress_log.push_back(std::string("start:") + (label ? label : ""));
  return kOfxStatOK;
}
OfxStatus progressUpdate(void *effect, double progress) {
  if (!effect) return kOfxStatErrBadHandle;
  std::lock_guard<std::mutex> lock(g_progress_mutex);
  char text[64];
  std::snprintf(text, sizeof text, "update:%.4f", progress);
  g_progress_log.push_back(text);
  return progress >= g_opt.progress_cancel_at ? kOfxStatReplyNo : kOfxStatOK;
}
OfxStatus progressEnd(void *effect) {
  if (!effect) return kOfxStatErrBadHandle;
  std::lock_guard<std::mutex> lock(g_progress_mutex);
  g_progress_log.push_back("end");
  return kOfxStatOK;
}
const OfxProgressSuiteV1 kProgressSuite = {progressStart, progressUpdate, progressEnd};

PropSet *g_host_props = nullptr;
const void *fetchSuite(OfxPropertySetHandle, const char *name, int version) {
  std::string n = name ? name : "";
  if (n == kOfxPropertySuite && version == 1) return &kPropertySuite;
  if (n == kOfxImageEffectSuite && version == 1) return &kEffectSuite;
  if (n == kOfxParameterSuite && version == 1) return &kParameterSuite;
  if (n == kOfxMemorySuite && version == 1) return &kMemorySuite;
  if (n == kOfxMultiThreadSuite && version == 1) return &kThreadSuite;
  if (n == kOfxMessageSuite && (version == 1 || version == 2)) return &kMessageSuite;
  if (n == kOfxProgressSuite && version == 1 && g_opt.progress) return &kProgressSuite;
  return nullptr;
}
OfxHost g_host{nullptr, fetchSuite};

// ---------------------------------------------------------------- JSON report

std::string q(const std::string &s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += c; }
    else if (static_cast<unsigned char>(c) < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += c;
  }
  return o + "\"";
}
template <typename T>
std::string arr(const std::vector<T> &v) {
  std::ostringstream o;
  o.precision(17);
  o << "[";
  for (size_t k = 0; k < v.size(); ++k) o << (k ? "," : "") << v[k];
  return o.str() + "]";
}
std::string strs(const std::vector<std::string> &v) {
  std::string o = "[";
  for (size_t k = 0; k < v.size(); ++k) o += (k ? "," : "") + q(v[k]);
  return o + "]";
}

long rss_kb() {
  std::ifstream in("/proc/self/statm");
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

// ---------------------------------------------------------------- driving the plugin

struct Plugin {
  OfxPlugin *p;
  OfxStatus call(const char *action, void *handle, PropSet *in = nullptr, PropSet *out = nullptr) {
    return p->mainEntry(action, handle, in ? ::handle(in) : nullptr, out ? ::handle(out) : nullptr);
  }
};

void set_param_from_option(ParamSet &set, const std::string &name, const std::string &value) {
  auto it = set.params.find(name);
  if (it == set.params.end()) {
    std::fprintf(stderr, "testhost: the effect has no parameter %s\n", name.c_str());
    std::exit(2);
  }
  Param &p = *it->second;
  if (p.type == kOfxParamTypeDouble) p.d = std::atof(value.c_str());
  else if (p.type == kOfxParamTypeString) p.s = value;
  else if (p.type == kOfxParamTypeChoice) {
    int n = dimension(p.props, kOfxParamPropChoiceOption);
    p.i = -1;
    for (int k = 0; k < n; ++k) if (sget(p.props, kOfxParamPropChoiceOption, k) == value) p.i = k;
    if (p.i < 0) p.i = std::atoi(value.c_str());  // an index, possibly out of range on purpose
  } else p.i = value == "true" ? 1 : value == "false" ? 0 : std::atoi(value.c_str());
}

// An instance built from the descriptor, the way hosts copy clip and parameter definitions.
std::unique_ptr<Effect> make_instance(Effect &desc, const char *context) {
  auto e = std::make_unique<Effect>();
  for (auto &[k, prop] : desc.props.props) e->props.props[k] = prop;
  propSetString(handle(&e->props), kOfxImageEffectPropContext, 0, context);
  propSetPointer(handle(&e->props), kOfxPropInstanceData, 0, nullptr);
  double size[2] = {static_cast<double>(g_opt.width), static_cast<double>(g_opt.height)};
  propSetDoubleN(handle(&e->props), kOfxImageEffectPropProjectSize, 2, size);
  for (auto &name : desc.clip_order) {
    OfxPropertySetHandle unused;
    clipDefine(reinterpret_cast<OfxImageEffectHandle>(e.get()), name.c_str(), &unused);
    Clip &c = *e->clips[name];
    for (auto &[k, prop] : desc.clips[name]->props.props) c.props.props[k] = prop;
    auto missing = g_opt.missing.find(name);
    propSetInt(handle(&c.props), kOfxImageClipPropConnected, 0,
               missing != g_opt.missing.end() && missing->second == "unconnected" ? 0 : 1);
    auto [first, last] = clip_range(name);
    double range[2] = {static_cast<double>(first), static_cast<double>(last)};
    propSetDoubleN(handle(&c.props), kOfxImageEffectPropFrameRange, 2, range);
    propSetString(handle(&c.props), kOfxImageClipPropUnmappedComponents, 0,
                  g_opt.components == "RGB" ? kOfxImageComponentRGB : kOfxImageComponentRGBA);
    propSetString(handle(&c.props), kOfxImageClipPropUnmappedPixelDepth, 0, ofx_depth());
    propSetString(handle(&c.props), kOfxImageEffectPropPreMultiplication, 0, source_premult());
    propSetDouble(handle(&c.props), kOfxImagePropPixelAspectRatio, 0, 1.0);
  }
  for (auto &name : desc.params.order) {
    Param &d = *desc.params.params[name];
    OfxPropertySetHandle unused;
    paramDefine(reinterpret_cast<OfxParamSetHandle>(&e->params), d.type.c_str(), name.c_str(), &unused);
    Param &p = *e->params.params[name];
    for (auto &[k, prop] : d.props.props) p.props.props[k] = prop;
    double dv = 0;
    int iv = 0;
    char *sv = nullptr;
    if (propGetDouble(handle(&d.props), kOfxParamPropDefault, 0, &dv) == kOfxStatOK) p.d = dv;
    if (propGetInt(handle(&d.props), kOfxParamPropDefault, 0, &iv) == kOfxStatOK) p.i = iv;
    if (propGetString(handle(&d.props), kOfxParamPropDefault, 0, &sv) == kOfxStatOK) p.s = sv;
  }
  for (auto &[name, value] : g_opt.params) set_param_from_option(e->params, name, value);
  return e;
}

void write_output(Buffer &b, const std::string &path) {
  int w = b.bounds.x2 - b.bounds.x1, h = b.bounds.y2 - b.bounds.y1;
  std::vector<float> out(static_cast<size_t>(w) * h * channels());
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels(); ++c)
        out[(static_cast<size_t>(h - 1 - y) * w + x) * channels() + c] = b.get(b.bounds.x1 + x, b.bounds.y1 + y, c);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char *>(out.data()), out.size() * sizeof(float));
}

std::string run_instance(Plugin &plugin, Effect &desc, const char *context, int index, std::unique_ptr<Effect> &inst) {
  std::ostringstream r;
  inst = make_instance(desc, context);
  void *h = inst.get();
  r << "{\"create\":" << plugin.call(kOfxActionCreateInstance, h);

  PropSet prefs_out;
  r << ",\"clip_preferences\":" << plugin.call(kOfxImageEffectActionGetClipPreferences, h, nullptr, &prefs_out);
  r << ",\"output_components\":" << q(sget(prefs_out, (std::string(kOfxImageClipPropComponentsPrefix) + "Output").c_str()));
  if (std::strcmp(context, kOfxImageEffectContextGeneral) == 0) {  // hosts ask only in the General context
    PropSet td_out;
    double whole[2] = {0, 0};
    propSetDoubleN(handle(&td_out), kOfxImageEffectPropFrameRange, 2, whole);
    r << ",\"time_domain_status\":" << plugin.call(kOfxImageEffectActionGetTimeDomain, h, nullptr, &td_out);
    std::vector<double> domain(2, 0);
    propGetDoubleN(handle(&td_out), kOfxImageEffectPropFrameRange, 2, domain.data());
    r << ",\"time_domain\":" << arr(domain);
  }

  double scale[2] = {g_opt.render_scale, g_opt.render_scale};
  PropSet rod_in, rod_out;
  propSetDouble(handle(&rod_in), kOfxPropTime, 0, g_opt.time);
  propSetDoubleN(handle(&rod_in), kOfxImageEffectPropRenderScale, 2, scale);
  OfxRectD src = source_rod();
  double def[4] = {src.x1, src.y1, src.x2, src.y2};
  propSetDoubleN(handle(&rod_out), kOfxImageEffectPropRegionOfDefinition, 4, def);
  OfxStatus st = plugin.call(kOfxImageEffectActionGetRegionOfDefinition, h, &rod_in, &rod_out);
  double rod[4];
  propGetDoubleN(handle(&rod_out), kOfxImageEffectPropRegionOfDefinition, 4, rod);
  // A host without multi-resolution keeps every clip at the project's size, whatever the plugin says.
  if (!g_multires || (st != kOfxStatOK)) std::memcpy(rod, def, sizeof rod);
  inst->output_rod = OfxRectD{rod[0], rod[1], rod[2], rod[3]};
  r << ",\"rod_status\":" << st << ",\"rod\":" << arr(std::vector<double>(rod, rod + 4));

  PropSet roi_in, roi_out;
  propSetDouble(handle(&roi_in), kOfxPropTime, 0, g_opt.time);
  propSetDoubleN(handle(&roi_in), kOfxImageEffectPropRenderScale, 2, scale);
  propSetDoubleN(handle(&roi_in), kOfxImageEffectPropRegionOfInterest, 4, rod);
  st = plugin.call(kOfxImageEffectActionGetRegionsOfInterest, h, &roi_in, &roi_out);
  std::vector<double> roi(4, 0);
  propGetDoubleN(handle(&roi_out), "OfxImageClipPropRoI_Source", 4, roi.data());
  r << ",\"roi_status\":" << st << ",\"roi\":" << arr(roi);

  // Every input clip's range starts as the current frame (the specification's default), then the plugin answers.
  PropSet fn_in, fn_out;
  propSetDouble(handle(&fn_in), kOfxPropTime, 0, g_opt.time);
  double same[2] = {g_opt.time, g_opt.time};
  for (auto &name : inst->clip_order)
    if (name != kOfxImageEffectOutputClipName) propSetDoubleN(handle(&fn_out), (kOfxImageClipPropFrameRangePrefix + name).c_str(), 2, same);
  st = plugin.call(kOfxImageEffectActionGetFramesNeeded, h, &fn_in, &fn_out);
  r << ",\"frames_needed_status\":" << st << ",\"frames_needed_clips\":{";
  std::vector<double> source_ranges;
  bool comma = false;
  for (auto &name : inst->clip_order) {
    if (name == kOfxImageEffectOutputClipName) continue;
    std::string key = kOfxImageClipPropFrameRangePrefix + name;
    std::vector<double> ranges(dimension(fn_out, key.c_str()));
    propGetDoubleN(handle(&fn_out), key.c_str(), static_cast<int>(ranges.size()), ranges.data());
    if (name == kOfxImageEffectSimpleSourceClipName) source_ranges = ranges;
    r << (comma ? "," : "") << q(name) << ":" << arr(ranges);
    comma = true;
  }
  r << "},\"frames_needed\":" << arr(source_ranges);

  Buffer output;
  OfxRectI ob{static_cast<int>(std::floor(rod[0] * g_opt.render_scale)), static_cast<int>(std::floor(rod[1] * g_opt.render_scale)),
              static_cast<int>(std::ceil(rod[2] * g_opt.render_scale)), static_cast<int>(std::ceil(rod[3] * g_opt.render_scale))};
  int window[4] = {ob.x1, ob.y1, ob.x2, ob.y2};

  // Hosts pre-set the answer's defaults; an effect that is an identity names the clip (and time) to copy.
  PropSet id_in, id_out;
  propSetDouble(handle(&id_in), kOfxPropTime, 0, g_opt.time);
  propSetString(handle(&id_in), kOfxImageEffectPropFieldToRender, 0, kOfxImageFieldNone);
  propSetIntN(handle(&id_in), kOfxImageEffectPropRenderWindow, 4, window);
  propSetDoubleN(handle(&id_in), kOfxImageEffectPropRenderScale, 2, scale);
  propSetString(handle(&id_out), kOfxPropName, 0, "");
  propSetDouble(handle(&id_out), kOfxPropTime, 0, g_opt.time);
  OfxStatus identity = plugin.call(kOfxImageEffectActionIsIdentity, h, &id_in, &id_out);
  std::string identity_clip = sget(id_out, kOfxPropName);
  double identity_time = g_opt.time;
  propGetDouble(handle(&id_out), kOfxPropTime, 0, &identity_time);
  r << ",\"is_identity\":" << identity;
  if (identity == kOfxStatOK) r << ",\"identity_clip\":" << q(identity_clip) << ",\"identity_time\":" << identity_time;

  output.allocate(ob);
  output.upload();
  inst->output = &output;
#ifdef CLARIFX_TESTHOST_CUDA
  cudaStream_t stream = nullptr;
  if (g_opt.cuda) cudaStreamCreate(&stream);
#endif
  PropSet seq_in;
  double range[2] = {g_opt.time, g_opt.time};
  propSetDoubleN(handle(&seq_in), kOfxImageEffectPropFrameRange, 2, range);
  propSetDouble(handle(&seq_in), kOfxImageEffectPropFrameStep, 0, 1.0);
  propSetDoubleN(handle(&seq_in), kOfxImageEffectPropRenderScale, 2, scale);
  propSetInt(handle(&seq_in), kOfxPropIsInteractive, 0, 0);
  r << ",\"begin_sequence\":" << plugin.call(kOfxImageEffectActionBeginSequenceRender, h, &seq_in);
  if (identity == kOfxStatOK) {  // no Render: copy the named clip's image where the window wants it
    auto clip = inst->clips.find(identity_clip);
    OfxPropertySetHandle image = nullptr;
    if (clip == inst->clips.end() ||
        clipGetImage(reinterpret_cast<OfxImageClipHandle>(clip->second.get()), identity_time, nullptr, &image) != kOfxStatOK || !image) {
      r << ",\"identity_copy\":1";
    } else {
      Buffer &src = *reinterpret_cast<HostImage *>(image)->owned;
      for (int y = ob.y1; y < ob.y2; ++y)
        for (int x = ob.x1; x < ob.x2; ++x)
          for (int k = 0; k < channels(); ++k) {
            bool inside = x >= src.bounds.x1 && x < src.bounds.x2 && y >= src.bounds.y1 && y < src.bounds.y2;
            output.set(x, y, k, inside ? src.get(x, y, k) : 0.f);
          }
      clipReleaseImage(image);
      output.upload();
      r << ",\"identity_copy\":0";
    }
  }

  PropSet render_in;
  propSetDouble(handle(&render_in), kOfxPropTime, 0, g_opt.time);
  propSetString(handle(&render_in), kOfxImageEffectPropFieldToRender, 0, kOfxImageFieldNone);
  propSetIntN(handle(&render_in), kOfxImageEffectPropRenderWindow, 4, window);
  propSetDoubleN(handle(&render_in), kOfxImageEffectPropRenderScale, 2, scale);
  propSetInt(handle(&render_in), kOfxImageEffectPropSequentialRenderStatus, 0, 0);
  propSetInt(handle(&render_in), kOfxImageEffectPropInteractiveRenderStatus, 0, 0);
#ifdef CLARIFX_TESTHOST_CUDA
  if (g_opt.cuda) {
    propSetInt(handle(&render_in), kOfxImageEffectPropCudaEnabled, 0, 1);
    propSetPointer(handle(&render_in), kOfxImageEffectPropCudaStream, 0, stream);
  }
#endif
  r << ",\"render\":" << (identity == kOfxStatOK ? -1 : plugin.call(kOfxImageEffectActionRender, h, &render_in));
#ifdef CLARIFX_TESTHOST_CUDA
  if (g_opt.cuda) {
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
#endif
  output.download();
  r << ",\"end_sequence\":" << plugin.call(kOfxImageEffectActionEndSequenceRender, h, &seq_in);
  inst->output = nullptr;
  std::string path = g_opt.output + "." + std::to_string(index) + ".raw";
  write_output(output, path);
  r << ",\"output_bounds\":" << arr(std::vector<int>{ob.x1, ob.y1, ob.x2, ob.y2}) << ",\"output_file\":" << q(path);
  return r.str();
}

std::string run_cycle(const char *binary) {
  std::ostringstream r;
  void *lib = dlopen(binary, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    r << "{\"dlopen_error\":" << q(dlerror()) << "}";
    return r.str();
  }
  auto count = reinterpret_cast<int (*)()>(dlsym(lib, "OfxGetNumberOfPlugins"));
  auto get = reinterpret_cast<OfxPlugin *(*)(int)>(dlsym(lib, "OfxGetPlugin"));
  auto set_host = reinterpret_cast<OfxStatus (*)(const OfxHost *)>(dlsym(lib, "OfxSetHost"));
  int n = count ? count() : 0;
  r << "{\"plugins\":[";
  OfxPlugin *chosen = nullptr;
  for (int k = 0; k < n; ++k) {
    OfxPlugin *p = get(k);
    r << (k ? "," : "") << "{\"id\":" << q(p->pluginIdentifier) << ",\"api\":" << q(p->pluginApi)
      << ",\"api_version\":" << p->apiVersion << ",\"major\":" << p->pluginVersionMajor << ",\"minor\":" << p->pluginVersionMinor << "}";
    if (g_opt.effect == p->pluginIdentifier) chosen = p;
  }
  r << "]";
  if (chosen) {
    // Natron-like hosts announce themselves through the 1.5 entry point; the others through setHost.
    if (g_opt.profile == "natron" && set_host) set_host(&g_host);
    else chosen->setHost(&g_host);
    Plugin plugin{chosen};
    r << ",\"load\":" << plugin.call(kOfxActionLoad, nullptr);
    {
      Effect desc;
      r << ",\"describe\":" << plugin.call(kOfxActionDescribe, &desc);
      std::vector<std::string> contexts;
      for (int k = 0; k < dimension(desc.props, kOfxImageEffectPropSupportedContexts); ++k)
        contexts.push_back(sget(desc.props, kOfxImageEffectPropSupportedContexts, k));
      std::vector<std::string> depths;
      for (int k = 0; k < dimension(desc.props, kOfxImageEffectPropSupportedPixelDepths); ++k)
        depths.push_back(sget(desc.props, kOfxImageEffectPropSupportedPixelDepths, k));
      r << ",\"label\":" << q(sget(desc.props, kOfxPropLabel)) << ",\"grouping\":" << q(sget(desc.props, kOfxImageEffectPluginPropGrouping))
        << ",\"contexts\":" << strs(contexts) << ",\"depths\":" << strs(depths)
        << ",\"tiles\":" << iget(desc.props, kOfxImageEffectPropSupportsTiles, -1)
        << ",\"multires\":" << iget(desc.props, kOfxImageEffectPropSupportsMultiResolution, -1)
        << ",\"temporal\":" << iget(desc.props, kOfxImageEffectPropTemporalClipAccess, -1)
        << ",\"thread_safety\":" << q(sget(desc.props, kOfxImageEffectPluginRenderThreadSafety))
        << ",\"cuda_render\":" << q(sget(desc.props, kOfxImageEffectPropCudaRenderSupported));
      const char *context = g_opt.profile == "natron" ? kOfxImageEffectContextGeneral : kOfxImageEffectContextFilter;
      PropSet ctx_in;
      propSetString(handle(&ctx_in), kOfxImageEffectPropContext, 0, context);
      r << ",\"context\":" << q(context) << ",\"describe_in_context\":" << plugin.call(kOfxImageEffectActionDescribeInContext, &desc, &ctx_in);
      r << ",\"clips\":" << strs(desc.clip_order) << ",\"params\":[";
      for (size_t k = 0; k < desc.params.order.size(); ++k) {
        Param &p = *desc.params.params[desc.params.order[k]];
        PropSet &pp = p.props;
        r << (k ? "," : "") << "{\"name\":" << q(p.name) << ",\"type\":" << q(p.type) << ",\"label\":" << q(sget(pp, kOfxPropLabel))
          << ",\"hint\":" << q(sget(pp, kOfxParamPropHint));
        for (const char *key : {kOfxParamPropDefault, kOfxParamPropMin, kOfxParamPropMax}) {
          auto it = pp.props.find(key);
          if (it == pp.props.end()) continue;
          r << "," << q(key) << ":";
          if (it->second.type == 'd') r << arr(it->second.d);
          else if (it->second.type == 'i') r << arr(it->second.i);
          else r << strs(it->second.s);
        }
        std::vector<std::string> options;
        for (int c = 0; c < dimension(pp, kOfxParamPropChoiceOption); ++c) options.push_back(sget(pp, kOfxParamPropChoiceOption, c));
        r << ",\"choices\":" << strs(options) << "}";
      }
      r << "]";

      std::vector<std::unique_ptr<Effect>> instances(g_opt.threads);
      std::vector<std::string> reports(g_opt.threads);
      if (g_opt.threads == 1) {
        reports[0] = run_instance(plugin, desc, context, 0, instances[0]);
      } else {
        std::vector<std::thread> threads;
        for (int k = 0; k < g_opt.threads; ++k)
          threads.emplace_back([&, k] { reports[k] = run_instance(plugin, desc, context, k, instances[k]); });
        for (auto &t : threads) t.join();
      }
      r << ",\"instances\":[";
      for (int k = 0; k < g_opt.threads; ++k) {
        OfxStatus st = plugin.call(kOfxActionDestroyInstance, instances[k].get());
        void *data = nullptr;
        propGetPointer(handle(&instances[k]->props), kOfxPropInstanceData, 0, &data);
        r << (k ? "," : "") << reports[k] << ",\"destroy\":" << st << ",\"instance_data_left\":" << (data ? 1 : 0) << "}";
      }
      r << "]";
      PropSet purge;
      r << ",\"purge_caches\":" << plugin.call(kOfxActionPurgeCaches, nullptr);
    }
    r << ",\"unload\":" << plugin.call(kOfxActionUnload, nullptr);
  }
  r << ",\"dlclose\":" << dlclose(lib) << ",\"images_outstanding\":" << g_images_out.load()
    << ",\"live_propsets\":" << g_live_propsets.load() << ",\"rss_kb\":" << rss_kb()
    << ",\"abort_calls\":" << g_abort_calls.load() << ",\"source_fetches\":" << g_source_fetches.load() << "}";
  return r.str();
}

bool parse(int argc, char **argv) {
  for (int k = 1; k < argc; ++k) {
    std::string a = argv[k];
    auto next = [&]() -> std::string {
      if (k + 1 >= argc) { std::fprintf(stderr, "testhost: %s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++k];
    };
    if (a == "--bundle") g_opt.bundle = next();
    else if (a == "--effect") g_opt.effect = next();
    else if (a == "--input") g_opt.input = next();
    else if (a == "--output") g_opt.output = next();
    else if (a == "--report") g_opt.report = next();
    else if (a == "--profile") g_opt.profile = next();
    else if (a == "--depth") g_opt.depth = next();
    else if (a == "--components") g_opt.components = next();
    else if (a == "--premult") g_opt.premult = next();
    else if (a == "--python-lib") g_opt.python_lib = next();
    else if (a == "--width") g_opt.width = std::atoi(next().c_str());
    else if (a == "--height") g_opt.height = std::atoi(next().c_str());
    else if (a == "--first") g_opt.first = std::atoi(next().c_str());
    else if (a == "--last") g_opt.last = std::atoi(next().c_str());
    else if (a == "--time") g_opt.time = std::atof(next().c_str());
    else if (a == "--threads") g_opt.threads = std::max(1, std::atoi(next().c_str()));
    else if (a == "--cycles") g_opt.cycles = std::max(1, std::atoi(next().c_str()));
    else if (a == "--render-scale") g_opt.render_scale = std::atof(next().c_str());
    else if (a == "--negative-row-bytes") g_opt.negative_row_bytes = true;
    else if (a == "--cuda") g_opt.cuda = true;
    else if (a == "--progress") g_opt.progress = true;
    else if (a == "--progress-cancel-at") g_opt.progress_cancel_at = std::atof(next().c_str());
    else if (a == "--abort-after") g_opt.abort_after = std::atol(next().c_str());
    else if (a == "--clip-input" || a == "--clip-range" || a == "--missing-clip") {
      std::string v = next();
      auto eq = v.find('=');
      if (eq == std::string::npos) { std::fprintf(stderr, "testhost: %s wants NAME=VALUE\n", a.c_str()); return false; }
      std::string name = v.substr(0, eq), value = v.substr(eq + 1);
      if (a == "--clip-input") g_opt.clip_inputs[name] = value;
      else if (a == "--missing-clip") g_opt.missing[name] = value;
      else g_opt.clip_ranges[name] = {std::atoi(value.c_str()), std::atoi(value.substr(value.find(':') + 1).c_str())};
    }
    else if (a == "--param") {
      std::string v = next();
      auto eq = v.find('=');
      if (eq == std::string::npos) { std::fprintf(stderr, "testhost: --param wants NAME=VALUE\n"); return false; }
      g_opt.params.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else {
      std::fprintf(stderr, "testhost: unknown argument %s\n", a.c_str());
      return false;
    }
  }
  if (g_opt.bundle.empty() || g_opt.report.empty()) return false;
  if (g_opt.profile != "resolve" && g_opt.profile != "nuke" && g_opt.profile != "natron") return false;
  if (g_opt.profile == "nuke" && g_opt.depth != "float") {
    std::fprintf(stderr, "testhost: the nuke profile renders float only\n");
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char **argv) {
  if (!parse(argc, argv)) {
    std::fprintf(stderr, "usage: see the comment at the top of testhost.cpp\n");
    return 2;
  }
#ifdef CLARIFX_TESTHOST_CUDA
  int devices = 0;
  if (g_opt.cuda && (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)) return 77;
#else
  if (g_opt.cuda) return 77;
#endif
  g_multires = g_opt.profile != "resolve";
  g_host_props = new PropSet;
  OfxPropertySetHandle hp = handle(g_host_props);
  g_host.host = hp;
  propSetString(hp, kOfxPropType, 0, kOfxTypeImageEffectHost);
  propSetString(hp, kOfxPropName, 0, ("io.clarifx.testhost." + g_opt.profile).c_str());
  propSetString(hp, kOfxPropLabel, 0, ("clarifx test host (" + g_opt.profile + "-like)").c_str());
  propSetInt(hp, kOfxImageEffectPropSupportsMultiResolution, 0, g_multires ? 1 : 0);
  propSetInt(hp, kOfxImageEffectPropSupportsTiles, 0, g_opt.profile == "resolve" ? 0 : 1);
  propSetInt(hp, kOfxImageEffectPropTemporalClipAccess, 0, 1);
  propSetString(hp, kOfxImageEffectPropSupportedPixelDepths, 0, kOfxBitDepthFloat);
  if (g_opt.profile != "nuke") {
    propSetString(hp, kOfxImageEffectPropSupportedPixelDepths, 1, kOfxBitDepthHalf);
    propSetString(hp, kOfxImageEffectPropSupportedPixelDepths, 2, kOfxBitDepthByte);
  }
  if (g_opt.profile == "resolve") propSetString(hp, kOfxImageEffectPropCudaRenderSupported, 0, "true");

  if (!g_opt.python_lib.empty()) {
    // A host with its own Python (Nuke): started before any plugin loads, GIL released between scripts.
    void *py = dlopen(g_opt.python_lib.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!py) { std::fprintf(stderr, "testhost: %s\n", dlerror()); return 2; }
    reinterpret_cast<void (*)(int)>(dlsym(py, "Py_InitializeEx"))(0);
    reinterpret_cast<int (*)(const char *)>(dlsym(py, "PyRun_SimpleString"))("import sys; sys.host_started = True");
    reinterpret_cast<void *(*)()>(dlsym(py, "PyEval_SaveThread"))();
  }

  // NAME.ofx.bundle/Contents/Linux-x86-64/NAME.ofx
  std::string bundle = g_opt.bundle;
  while (bundle.size() > 1 && bundle.back() == '/') bundle.pop_back();
  std::string name = bundle.substr(bundle.find_last_of('/') + 1);
  name = name.substr(0, name.size() - std::string(".bundle").size());
  std::string binary = bundle + "/Contents/Linux-x86-64/" + name;
  std::ostringstream report;
  report << "{\"profile\":" << q(g_opt.profile) << ",\"cycles\":[";
  for (int c = 0; c < g_opt.cycles; ++c) report << (c ? "," : "") << run_cycle(binary.c_str());
  report << "],\"messages\":" << strs(g_messages) << ",\"progress\":" << strs(g_progress_log) << "}\n";
  std::ofstream(g_opt.report) << report.str();
  return 0;
}
