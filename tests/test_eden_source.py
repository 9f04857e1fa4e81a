"""Where Eden comes from (scripts/edenhost.py): EDEN_SRC, the whole tree's archive, or GitHub's download.

A download is accepted only when its files give the pinned commit's git tree id: the
test serves, from 127.0.0.1, `git archive` of a tiny repository it makes (with the
two submodules as gitlinks, as GitHub's archives leave them: empty folders), once as
it is and once with one byte changed.  The pin itself is checked on the whole tree's
archive next to the repository.
"""
import functools
import http.server
import os
import subprocess
import tarfile
import threading

import pytest

import edenhost


def git(cwd, *args):
    return subprocess.run(("git",) + args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def tiny_eden(path):
    """A repository holding a tiny 'Eden' and Eden's two submodules as gitlinks: its tree id."""
    os.makedirs(os.path.join(path, "models"))
    with open(os.path.join(path, "models", "00_db.py"), "w") as f:
        f.write("# Eden's models\n")
    with open(os.path.join(path, ".gitignore"), "w") as f:
        f.write("*.py\n")  # as Eden's own .gitignore skips some of its committed files
    git(path, "init", "-q")
    git(path, "add", "-f", ".")
    for p, commit in edenhost.SUBMODULES.items():
        git(path, "update-index", "--add", "--cacheinfo", "160000,%s,%s" % (commit, p))
    git(path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "tiny eden")
    return git(path, "rev-parse", "HEAD^{tree}")


def archive(repo, out):
    """GitHub's kind of archive: `git archive` of HEAD under one top folder."""
    git(repo, "archive", "--format=tar.gz", "--prefix=eden-%s/" % edenhost.EDEN_COMMIT, "-o", out, "HEAD")


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1: (folder, base url); stopped at teardown."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_local_source(tmp_path, monkeypatch):
    """A machine without ../shared/eden and without EDEN_SRC: its own cache folder."""
    monkeypatch.setattr(edenhost, "cache_dir", lambda: str(tmp_path / "cache"))
    monkeypatch.setattr(edenhost, "SHARED_ARCHIVE", str(tmp_path / "no-shared" / edenhost.ARCHIVE_NAME))
    monkeypatch.delenv("EDEN_SRC", raising=False)
    monkeypatch.delenv("EDEN_ARCHIVE", raising=False)


def test_download_accepted_when_its_tree_is_the_commits(tmp_path, served, no_local_source, monkeypatch):
    repo = tmp_path / "repo"
    tree_id = tiny_eden(str(repo))
    www, url = served
    archive(str(repo), str(www / "eden.tar.gz"))
    monkeypatch.setenv("EDEN_ARCHIVE_URL", url + "/eden.tar.gz")
    monkeypatch.setenv("EDEN_TREE_ID", tree_id)
    tree = edenhost.eden_source()
    assert tree.startswith(str(tmp_path / "cache"))
    assert open(os.path.join(tree, "models", "00_db.py")).read() == "# Eden's models\n"
    assert edenhost.eden_source() == tree  # unpacked once: no second download
    assert not [n for n in os.listdir(tmp_path / "cache") if n.endswith(".tar.gz")]  # the download is not kept


def test_download_with_one_byte_changed_is_refused(tmp_path, served, no_local_source, monkeypatch):
    repo = tmp_path / "repo"
    tree_id = tiny_eden(str(repo))
    www, url = served
    # the same files, one byte changed ("E" -> "F"), as a damaged or tampered download would bring
    with open(repo / "models" / "00_db.py", "w") as f:
        f.write("# Fden's models\n")
    git(str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-a", "-m", "changed")
    archive(str(repo), str(www / "eden.tar.gz"))
    monkeypatch.setenv("EDEN_ARCHIVE_URL", url + "/eden.tar.gz")
    monkeypatch.setenv("EDEN_TREE_ID", tree_id)
    with pytest.raises(SystemExit, match="refused .*eden.tar.gz.*not %s" % tree_id):
        edenhost.eden_source()
    assert not [n for n in os.listdir(tmp_path / "cache") if n.startswith("eden-")]  # nothing left to run


def test_no_source_at_all_says_what_to_do(served, no_local_source, monkeypatch):
    www, url = served
    monkeypatch.setenv("EDEN_ARCHIVE_URL", url + "/nothing-here.tar.gz")
    with pytest.raises(SystemExit, match="no Eden source.*EDEN_SRC=/path/to/your/eden"):
        edenhost.eden_source()
    assert [n for n in os.listdir(edenhost.cache_dir()) if not n.startswith(".")] == []  # no partial download left


def test_eden_src_is_used_as_it_is(tmp_path, no_local_source, monkeypatch):
    own = tmp_path / "own-eden"
    (own / "models").mkdir(parents=True)
    monkeypatch.setenv("EDEN_SRC", str(own))
    with pytest.raises(SystemExit, match="not a Sahana Eden tree"):
        edenhost.eden_source()
    (own / "models" / "00_db.py").write_text("# Eden\n")
    assert edenhost.eden_source() == str(own)


def test_the_whole_trees_archive_gives_the_pinned_tree_id(tmp_path):
    """The pin is right: the full archive plus the four entries its README names is the commit's tree."""
    path = edenhost.shared_archive()
    assert os.path.isfile(path), "the whole tree's archive next to the repository (or EDEN_ARCHIVE)"
    assert edenhost.sha256(path) == edenhost.ARCHIVE_SHA256
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path, filter="tar")
    (top,) = os.listdir(tmp_path)
    folder = os.path.join(tmp_path, top)
    missing = [("100644", blob, path) for path, blob in sorted(edenhost.MISSING.items())]
    assert edenhost.git_tree_id(folder, edenhost.gitlinks() + missing) == edenhost.EDEN_TREE
    # and what the launcher runs is that tree: the archive unpacked as it is
    assert not any(os.path.exists(os.path.join(folder, p)) for p in edenhost.MISSING)
