"""What a scikit-learn user writes instead of ``mixlake run`` (the whole-process benchmark
runs it as ``python sklearn_script.py DATA_DIR OUT_DIR``): read every Parquet file, fit
with the defaults, write id, cluster and prob_* per input file."""
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.mixture import GaussianMixture

data_dir, out_dir = sys.argv[1], sys.argv[2]
files = sorted(f for f in os.listdir(data_dir) if f.endswith(".parquet"))
tables = [pq.read_table(os.path.join(data_dir, f)) for f in files]
features = [c for c in tables[0].column_names if c != "id"]
X = np.vstack([np.column_stack([t[c].to_numpy() for c in features]) for t in tables])
model = GaussianMixture(8, random_state=0).fit(X)
proba = model.predict_proba(X)
print(f"log-likelihood {model.lower_bound_:.6f}")
os.makedirs(out_dir, exist_ok=True)
start = 0
for i, table in enumerate(tables):
    p, start = proba[start:start + table.num_rows], start + table.num_rows
    columns = {"id": table["id"], "cluster": pa.array(p.argmax(axis=1).astype(np.int32))}
    columns.update({f"prob_{k}": p[:, k] for k in range(p.shape[1])})
    pq.write_table(pa.table(columns), os.path.join(out_dir, files[i]))  # as the input
