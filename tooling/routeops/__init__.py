"""Operating the learned router on live traffic: feedback-trained artifacts, shadow
comparison and promotion (tooling: `tierserve route-train --from-feedback`, `route-eval
--shadow`, `route-promote`)."""
