"""The package every function ships with. One folder per surface; the top level is what they share.

    shared/                      the core: no module here imports a surface package
        config, errors, logs, ids    settings from the environment, the error tree, JSON logs, ids
        clock                        the one clock (wall, monotonic, sleep) that tests can move
        auth, client                 the credential chain; the Foundation Models HTTP client (retries, pacing)
        events, responses            platform envelopes in; HTTP answers out (native or OpenAI error shape)
        routes, runtime              the route table; the one wrapper every handler goes through
        prices                       the price table (data) and what a day's usage costs
    shared/native/               the native Foundation Models REST dialect
        models, services, schemas    request models; what the sync routes do; response models (spec only)
    shared/jobs/                 async work: operations and batches over Message Queue and the job store
        store, queue                 the job store (Document API + Object Storage); the queue client
        submit, views                creating a job; what a caller sees of one (the Operation JSON)
        operations, batches          the HTTP side of async operations and of batches
        worker, poller               the queue trigger's side; the timer trigger's side
        usage                        the usage ledger: one log line and one store transaction per upstream call
    shared/openai/               the OpenAI dialect (/v1), translated to the native calls

Dependencies point down this list and never in a circle (tests/unit/test_layout.py checks it).
"""
