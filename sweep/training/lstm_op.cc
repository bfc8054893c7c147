// tf.compat.v1 BasicLSTMCell run over all time steps, as two TensorFlow ops: forward and backward.
//
// Why native code: written with TensorFlow ops, one training step of the tutorial's LSTM is
// ~2,200 small ops; per-op dispatch and oneDNN's per-call overhead made a 64x128x512 matmul cost
// ~130 us instead of the ~60 us it takes in a loop, and the step trained ~12% slower than
// PyTorch's nn.LSTM. Here each time step is one matmul and one vectorised pass of elementwise
// work. The ops are single-threaded: the training step runs two halves of the batch as two
// independent chains, one per core (sweep/train.py).
//
// BasicLSTMCell: z = [x, h] @ kernel + bias, gates i, j, f, o along z's last axis,
// c = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j), h = tanh(c) * sigmoid(o); h and c
// start at zero.

#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Out = Eigen::Map<Matrix>;
using In = Eigen::Map<const Matrix>;
constexpr int64_t kAlign = 16;  // floats in 64 bytes, the alignment of TensorFlow's CPU allocations

// sigmoid(x) = (1 + tanh(x / 2)) / 2: Eigen's vectorised tanh is ~2x faster than its logistic.
template <typename A>
auto sigmoid(const A& x) {
  return 0.5f + 0.5f * (0.5f * x).tanh();
}

// The shapes of one call: x [batch, steps, inputs], kernel [inputs + units, 4 units], bias [4 units].
struct Shapes {
  int64_t batch, steps, inputs, units;

  static Status Of(const Tensor& x, const Tensor& kernel, const Tensor& bias, Shapes* s) {
    if (x.dims() != 3 || kernel.dims() != 2 || bias.dims() != 1 || x.dim_size(1) < 1 ||
        kernel.dim_size(1) % 4 != 0 || kernel.dim_size(0) != x.dim_size(2) + kernel.dim_size(1) / 4 ||
        bias.dim_size(0) != kernel.dim_size(1)) {
      return tensorflow::errors::InvalidArgument(
          "BasicLstm: want x [batch, steps >= 1, inputs], kernel [inputs + units, 4 units], bias [4 units]; got ",
          x.shape().DebugString(), ", ", kernel.shape().DebugString(), ", ", bias.shape().DebugString());
    }
    *s = {x.dim_size(0), x.dim_size(1), x.dim_size(2), kernel.dim_size(1) / 4};
    return tensorflow::OkStatus();
  }
};

class BasicLstmOp : public OpKernel {
 public:
  explicit BasicLstmOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("forget_bias", &forget_bias_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("keep_steps", &keep_steps_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &x_t = ctx->input(0), &kernel_t = ctx->input(1), &bias_t = ctx->input(2);
    Shapes s;
    OP_REQUIRES_OK(ctx, Shapes::Of(x_t, kernel_t, bias_t, &s));
    const int64_t n = s.batch, d = s.inputs, u = s.units, g = 4 * u;
    // Per step: xh = [x, h] (the matmul's input), c, and the gates after their activations:
    // what the gradient needs. Without keep_steps (inference) these outputs are empty and two
    // slots of scratch, used in turn, stand in for them.
    const int64_t kept = keep_steps_ ? s.steps : 0;
    Tensor *h_last, *xh_out, *c_out, *gates_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({n, u}), &h_last));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({kept, n, d + u}), &xh_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({kept, n, u}), &c_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({kept, n, g}), &gates_out));
    // Eigen works the unaligned head of each row with scalar code, whose tanh rounds otherwise
    // than its vector code: for inference to give training's bits, each scratch step sits at
    // the address, modulo TensorFlow's 64-byte alignment, of the same step in training's outputs.
    const int64_t sizes[3] = {n * (d + u), n * u, n * g};  // xh, c, gates: one step of each
    int64_t slots[3], scratch_floats = 0;
    for (int k = 0; k < 3; ++k) {
      slots[k] = (sizes[k] + 2 * kAlign - 1) / kAlign * kAlign;
      scratch_floats += keep_steps_ ? 0 : 2 * slots[k];
    }
    Tensor scratch;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({scratch_floats}), &scratch));
    float* const kept_at[3] = {xh_out->flat<float>().data(), c_out->flat<float>().data(), gates_out->flat<float>().data()};
    float* const scratch_at[3] = {scratch.flat<float>().data(), scratch.flat<float>().data() + 2 * slots[0],
                                  scratch.flat<float>().data() + 2 * (slots[0] + slots[1])};
    auto step = [&](int k, int64_t t) -> float* {  // buffer k (xh, c, gates) of step t
      return keep_steps_ ? kept_at[k] + t * sizes[k] : scratch_at[k] + (t % 2) * slots[k] + (t * sizes[k]) % kAlign;
    };

    const In kernel(kernel_t.flat<float>().data(), d + u, g);
    Eigen::RowVectorXf bias = Eigen::Map<const Eigen::RowVectorXf>(bias_t.flat<float>().data(), g);
    bias.segment(2 * u, u).array() += forget_bias_;
    const In x(x_t.flat<float>().data(), n, s.steps * d);  // row b: image b's steps, one after another
    Out(step(0, 0), n, d + u).rightCols(u).setZero();  // h before step 0
    for (int64_t t = 0; t < s.steps; ++t) {
      Out xh_now(step(0, t), n, d + u), z(step(2, t), n, g);
      xh_now.leftCols(d) = x.middleCols(t * d, d);
      z.rowwise() = bias;
      z.noalias() += xh_now * kernel;
      auto i = z.leftCols(u).array(), j = z.middleCols(u, u).array(), f = z.middleCols(2 * u, u).array(),
           o = z.rightCols(u).array();
      i = sigmoid(i);
      j = j.tanh();
      f = sigmoid(f);
      o = sigmoid(o);
      auto c_now = Out(step(1, t), n, u).array();
      if (t) {
        c_now = Out(step(1, t - 1), n, u).array() * f + i * j;
      } else {
        c_now = i * j;
      }
      // h goes where the next step's matmul reads it, or out if this is the last step.
      const bool last = t == s.steps - 1;
      float* h_next = last ? h_last->flat<float>().data() : step(0, t + 1) + d;
      Eigen::Map<Matrix, 0, Eigen::OuterStride<>>(h_next, n, u, Eigen::OuterStride<>(last ? u : d + u)).array() =
          c_now.tanh() * o;
    }
  }

 private:
  float forget_bias_;
  bool keep_steps_;
};

class BasicLstmGradOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* ctx) override {
    const Tensor &dh_last = ctx->input(0), &kernel_t = ctx->input(1), &bias_t = ctx->input(2), &xh_t = ctx->input(3),
                 &c_t = ctx->input(4), &gates_t = ctx->input(5);
    OP_REQUIRES(ctx, xh_t.dims() == 3 && kernel_t.dims() == 2 && xh_t.dim_size(2) == kernel_t.dim_size(0),
                tensorflow::errors::InvalidArgument("BasicLstmGrad: the forward pass did not keep_steps"));
    const int64_t steps = xh_t.dim_size(0), n = xh_t.dim_size(1), g = kernel_t.dim_size(1), u = g / 4,
                  d = kernel_t.dim_size(0) - u;
    OP_REQUIRES(ctx, steps >= 1 && c_t.shape() == TensorShape({steps, n, u}) &&
                         gates_t.shape() == TensorShape({steps, n, g}) && dh_last.shape() == TensorShape({n, u}) &&
                         bias_t.shape() == TensorShape({g}),
                tensorflow::errors::InvalidArgument("BasicLstmGrad: the forward pass did not keep_steps"));
    Tensor *d_kernel_t, *d_bias_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, kernel_t.shape(), &d_kernel_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, bias_t.shape(), &d_bias_t));
    // The h rows of the kernel, transposed once: a plain product per step is ~3% faster than
    // one with a transposed operand, with the same result.
    const Matrix h_kernel_t = In(kernel_t.flat<float>().data() + d * g, u, g).transpose();
    const float *c = c_t.flat<float>().data(), *gates = gates_t.flat<float>().data();

    Matrix dz_all(steps * n, g);  // d loss / d z, every step
    Matrix dh = In(dh_last.flat<float>().data(), n, u), dc = Matrix::Zero(n, u);
    for (int64_t t = steps - 1; t >= 0; --t) {
      const In z(gates + t * n * g, n, g);
      auto i = z.leftCols(u).array(), j = z.middleCols(u, u).array(), f = z.middleCols(2 * u, u).array(),
           o = z.rightCols(u).array();
      const Matrix tanh_c = In(c + t * n * u, n, u).array().tanh().matrix();
      dc.array() += dh.array() * o * (1.f - tanh_c.array().square());
      auto dz = dz_all.middleRows(t * n, n);
      dz.leftCols(u).array() = dc.array() * j * i * (1.f - i);
      dz.middleCols(u, u).array() = dc.array() * i * (1.f - j.square());
      dz.rightCols(u).array() = dh.array() * tanh_c.array() * o * (1.f - o);
      if (t) {
        dz.middleCols(2 * u, u).array() = dc.array() * In(c + (t - 1) * n * u, n, u).array() * f * (1.f - f);
        dc.array() *= f;
        dh.noalias() = dz * h_kernel_t;
      } else {
        dz.middleCols(2 * u, u).setZero();  // c before step 0 is zero
      }
    }
    // The weights' gradients, one matmul over all steps: z = [x, h] @ kernel + bias.
    Out(d_kernel_t->flat<float>().data(), d + u, g).noalias() =
        In(xh_t.flat<float>().data(), steps * n, d + u).transpose() * dz_all;
    Eigen::Map<Eigen::RowVectorXf>(d_bias_t->flat<float>().data(), g) = dz_all.colwise().sum();
  }
};

}  // namespace

REGISTER_OP("BasicLstm")
    .Input("x: float")
    .Input("kernel: float")
    .Input("bias: float")
    .Attr("forget_bias: float")
    .Attr("keep_steps: bool")
    .Output("h_last: float")
    .Output("xh: float")
    .Output("c: float")
    .Output("gates: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* ctx) {
      bool keep_steps;
      TF_RETURN_IF_ERROR(ctx->GetAttr("keep_steps", &keep_steps));
      auto batch = ctx->Dim(ctx->input(0), 0), steps = keep_steps ? ctx->Dim(ctx->input(0), 1) : ctx->MakeDim(0);
      auto xh = ctx->Dim(ctx->input(1), 0), gates = ctx->Dim(ctx->input(1), 1);
      tensorflow::shape_inference::DimensionHandle units;
      TF_RETURN_IF_ERROR(ctx->Divide(gates, 4, /*evenly_divisible=*/true, &units));
      ctx->set_output(0, ctx->MakeShape({batch, units}));
      ctx->set_output(1, ctx->MakeShape({steps, batch, xh}));
      ctx->set_output(2, ctx->MakeShape({steps, batch, units}));
      ctx->set_output(3, ctx->MakeShape({steps, batch, gates}));
      return tensorflow::OkStatus();
    });

REGISTER_OP("BasicLstmGrad")
    .Input("dh_last: float")
    .Input("kernel: float")
    .Input("bias: float")
    .Input("xh: float")
    .Input("c: float")
    .Input("gates: float")
    .Output("d_kernel: float")
    .Output("d_bias: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* ctx) {
      ctx->set_output(0, ctx->input(1));
      ctx->set_output(1, ctx->input(2));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("BasicLstm").Device(tensorflow::DEVICE_CPU), BasicLstmOp);
REGISTER_KERNEL_BUILDER(Name("BasicLstmGrad").Device(tensorflow::DEVICE_CPU), BasicLstmGradOp);
