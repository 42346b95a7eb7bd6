"""A fixed English corpus for training the tiny models' tokenizer.

Kept in code (not downloaded) so `make-tiny` is offline and byte-for-byte
reproducible. The words only shape the BPE merges; the models' weights are random.
"""

CORPUS = """
Tierserve answers requests from many teams. A short greeting goes to the fast tier;
a long question that asks to prove a theorem step by step goes to the reasoning tier.
The router reads the prompt, counts its tokens, looks for code fences and keywords,
and picks a tier. Every response names the tier and the reason in its headers.
Operators watch time to first token, tokens per second, queue depth and errors.
When a tier is unhealthy or full, the request falls back to the other tier.
Sessions stay on one tier so the prefix cache keeps working.

The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow.
What is the capital of France? Paris is the capital of France.
Explain why the sum of two even numbers is even. Let n = 2a and m = 2b, then
n + m = 2(a + b), which is even. Therefore the statement holds.
Write a function in Python that returns the factorial of a number.
def factorial(n):
    if n < 2:
        return 1
    return n * factorial(n - 1)
Compute 17 * 23 = 391. Solve for x: 3x + 5 = 20, so x = 5.
A train leaves the station at nine and travels sixty miles per hour.
Summarise the following paragraph in one sentence. Translate hello into Spanish: hola.
Hello! Hi there. Thanks, good morning, good night, see you soon.
Large language models generate text one token at a time. Batching many requests
together keeps the accelerator busy. The key value cache stores attention state.
Kubernetes runs the cluster; KubeRay creates Ray clusters; Ray Serve scales replicas.
Prometheus scrapes metrics and Grafana draws dashboards. Alerts page the on-call engineer.
0 1 2 3 4 5 6 7 8 9 10 100 1000 + - * / = < > ( ) [ ] { } : ; , . ! ? ' " # @ % & _
"""
