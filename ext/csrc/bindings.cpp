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
// The CPU kernels parallelise with at::parallel_for, which runs serially unless compiled with OpenMP.
bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "nerfpipe sampling kernels: image batch sampler, stratified and inverse-transform sampling, "
            "positional encoding, integrated positional encoding";
  m.def("has_cuda", &has_cuda, "True when the CUDA kernels were compiled in.");
  m.def("has_openmp", &has_openmp, "True when the CPU kernels were compiled with OpenMP (multi-threaded).");
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
  m.def("integrated_pos_enc_forward", &nerfpipe::integrated_pos_enc_forward,
        "mean, var [P, C] -> [P, 2*C*num_freqs] ([sin block, cos block], index k*C + c in each).",
        py::arg("mean"), py::arg("var"), py::arg("num_freqs"));
  m.def("integrated_pos_enc_backward", &nerfpipe::integrated_pos_enc_backward,
        "mean, var [P, C], grad_out [P, 2*C*num_freqs] -> (grad_mean, grad_var) [P, C].", py::arg("mean"),
        py::arg("var"), py::arg("grad_out"), py::arg("num_freqs"));
}
