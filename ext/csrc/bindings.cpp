// Python bindings of nerfpipe._ext; the kernels live in one .cpp (CPU) and one .cu (CUDA) per topic.
#include <torch/extension.h>

#include "nerfpipe_ext.h"

namespace {
bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "nerfpipe sampling kernels: image batch sampler, stratified and inverse-transform sampling, "
            "positional encoding";
  m.def("has_cuda", &has_cuda, "True when the CUDA kernels were compiled in.");
  m.def("uniform_fill", &nerfpipe::uniform_fill, "Fill a float32 [n] tensor with hash uniforms of (s1, s2, i).",
        py::arg("out"), py::arg("s1"), py::arg("s2"));
  m.def("ray_indices_fill", &nerfpipe::ray_indices_fill,
        "Fill an int64 [batch] tensor with uniform pixel indices image*H*W + y*W + x inside the centred crop.",
        py::arg("out"), py::arg("n_images"), py::arg("height"), py::arg("width"), py::arg("crop_h"),
        py::arg("crop_w"), py::arg("s1"), py::arg("s2"));
  m.def("stratified_endpoints", &nerfpipe::stratified_endpoints,
        "near, far [R] -> t [R, n_intervals+1] sorted interval endpoints.", py::arg("near"), py::arg("far"),
        py::arg("n_intervals"), py::arg("randomized"), py::arg("s1"), py::arg("s2"));
  m.def("sample_pdf", &nerfpipe::sample_pdf,
        "bins [R, B+1], weights [R, B] -> samples [R, n_samples] by inverse-transform sampling.",
        py::arg("bins"), py::arg("weights"), py::arg("n_samples"), py::arg("randomized"), py::arg("s1"),
        py::arg("s2"), py::arg("eps"));
  m.def("positional_encoding_forward", &nerfpipe::positional_encoding_forward,
        "x [P, C] -> [P, C*(include_input + 2*num_freqs)].", py::arg("x"), py::arg("num_freqs"),
        py::arg("include_input"));
  m.def("positional_encoding_backward", &nerfpipe::positional_encoding_backward,
        "x [P, C], grad_out [P, D] -> grad_x [P, C].", py::arg("x"), py::arg("grad_out"), py::arg("num_freqs"),
        py::arg("include_input"));
}
