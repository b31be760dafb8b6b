"""The model-selection loop a scikit-learn user writes instead of a ``mixlake run`` over a
grid (``python sklearn_grid_script.py DATA_DIR OUT_DIR [MAX_COMPONENTS]``): fit every
candidate (1..10 components x 4 covariance types), keep the lowest BIC, write id,
cluster and prob_* per input file."""
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.mixture import GaussianMixture

data_dir, out_dir = sys.argv[1], sys.argv[2]
max_components = int(sys.argv[3]) if len(sys.argv) > 3 else 10
files = sorted(f for f in os.listdir(data_dir) if f.endswith(".parquet"))
tables = [pq.read_table(os.path.join(data_dir, f)) for f in files]
features = [c for c in tables[0].column_names if c != "id"]
X = np.vstack([np.column_stack([t[c].to_numpy() for c in features]) for t in tables])
best = None
for k in range(1, max_components + 1):
    for covariance_type in ("full", "tied", "diag", "spherical"):
        model = GaussianMixture(k, covariance_type=covariance_type, random_state=0).fit(X)
        bic = model.bic(X)
        if best is None or bic < best[0]:
            best = (bic, model)
model = best[1]
print(f"chosen {model.covariance_type}-k{model.n_components} BIC {best[0]:.1f}")
proba = model.predict_proba(X)
os.makedirs(out_dir, exist_ok=True)
start = 0
for i, table in enumerate(tables):
    p, start = proba[start:start + table.num_rows], start + table.num_rows
    columns = {"id": table["id"], "cluster": pa.array(p.argmax(axis=1).astype(np.int32))}
    columns.update({f"prob_{k}": p[:, k] for k in range(p.shape[1])})
    pq.write_table(pa.table(columns), os.path.join(out_dir, files[i]))  # as the input
