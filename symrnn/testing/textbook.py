"""Gate-adjoint BPTT formulas as the notes and tutorials write them, one set per gated cell.

Each ``*_DEFS`` is a list of definitions (δ_t and the per-gate δ^{g}_t, in the notes'
superscript notation) and ``*_GRAD`` the gradient line that reads them; joined with
"; " they are a formula ``symrnn check`` accepts.  Shared by the checker's tests and
``bench/bench_check.py``, so both time and test the same text.
"""

__all__ = ["LSTM_DEFS", "LSTM_GRAD", "GRU_DEFS", "GRU_GRAD", "GRU_V1_DEFS", "GRU_V1_GRAD"]

LSTM_DEFS = [
    r"\delta_t = W_hy^T e_t + W_hi^T \delta^{i}_{t+1} + W_hf^T \delta^{f}_{t+1}"
    r" + W_hg^T \delta^{g}_{t+1} + W_ho^T \delta^{o}_{t+1}",
    r"\delta^{o}_t = \delta_t * tanh(c_t) * o_t * (1 - o_t)",
    r"\delta^{c}_t = \delta_t * o_t * (1 - tanh(c_t)^2) + \delta^{c}_{t+1} * f_{t+1}",
    r"\delta^{f}_t = \delta^{c}_t * c_{t-1} * f_t * (1 - f_t)",
    r"\delta^{i}_t = \delta^{c}_t * g_t * i_t * (1 - i_t)",
    r"\delta^{g}_t = \delta^{c}_t * i_t * (1 - g_t^2)",
]
LSTM_GRAD = r"dL/dW_hf = \sum_t \delta^{f}_t h_{t-1}^T"

GRU_DEFS = [
    r"\delta_t = W_hy^T e_t + \delta_{t+1} * u_{t+1} + W_hn^T (r_{t+1} * \delta^{n}_{t+1})"
    r" + W_hr^T \delta^{r}_{t+1} + W_hu^T \delta^{u}_{t+1}",
    r"\delta^{n}_t = \delta_t * (1 - u_t) * (1 - n_t^2)",
    r"\delta^{u}_t = \delta_t * (h_{t-1} - n_t) * u_t * (1 - u_t)",
    r"\delta^{r}_t = \delta^{n}_t * (W_hn h_{t-1} + b_hn) * r_t * (1 - r_t)",
]
GRU_GRAD = r"dL/dW_hr = \sum_t \delta^{r}_t h_{t-1}^T"

GRU_V1_DEFS = [
    r"\delta_t = W_hy^T e_t + \delta_{t+1} * u_{t+1} + W_hn^T \delta^{n}_{t+1} * r_{t+1}"
    r" + W_hr^T \delta^{r}_{t+1} + W_hu^T \delta^{u}_{t+1}",
    r"\delta^{n}_t = \delta_t * (1 - u_t) * (1 - n_t^2)",
    r"\delta^{u}_t = \delta_t * (h_{t-1} - n_t) * u_t * (1 - u_t)",
    r"\delta^{r}_t = (W_hn^T \delta^{n}_t) * h_{t-1} * r_t * (1 - r_t)",
]
GRU_V1_GRAD = GRU_GRAD
