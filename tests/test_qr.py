"""Query/Retrieve over the archive: the index behind its interface (levels, relational keys, computed
attributes, character sets, extra keys, an older schema upgraded) and the SCP (Patient and Study Root FIND,
MOVE and GET at every level, extended negotiation, FF01, result limit, failures, the A701 setting), with
ferrodicom's and pynetdicom's SCUs. The corpus goes in through the network, so the data path's index keys
are the ones tested."""

from __future__ import annotations

import shutil
import sqlite3

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE as PynAE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from qr_corpus import CT, NM, PATIENTS, PT, STUDIES, study_uid, write_corpus

from ferrodicom import AE, Archive, evt
from ferrodicom.archive.index import Query
from ferrodicom.archive.matching import condition
from ferrodicom.services.qr import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    QRSettings,
    QueryRetrieveSCP,
)
from ferrodicom.services.storage import StorageSCP
from ferrodicom.services.storage.scu import store


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder)


@pytest.fixture(scope="module")
def node(tmp_path_factory, corpus):
    """An in-process archive node (storage + Q/R, AE "FERRO") holding the corpus, stored over the network;
    the peer "DEST" is a ferrodicom storage SCP keeping what it receives in memory."""
    root = tmp_path_factory.mktemp("node")
    archive = Archive(root / "archive", durability="none", index_keys={"series": ["PerformedProcedureStepDescription"]})
    ae = AE("FERRO")
    service = QueryRetrieveSCP(archive, ae)
    ae.add_service(StorageSCP(archive))
    ae.add_service(service)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    received: list[Dataset] = []
    dest = AE("DEST")
    for uid in (CT, NM, PT):
        dest.add_supported_context(uid)
    dest_server = dest.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: received.append(e.dataset) or 0)]
    )
    ae.add_peer("DEST", "127.0.0.1", dest_server.port)
    report = store("127.0.0.1", server.port, [corpus[0]], called_ae="FERRO")
    assert not report.failed and len(report.succeeded) == len(corpus[1])
    archive.flush()
    yield archive, server.port, service, received
    server.shutdown()
    dest_server.shutdown()
    archive.close()


def find(port, ds, model=STUDY_ROOT_FIND, ext_neg=None):
    ae = AE("SCU")
    ae.add_requested_context(model)
    with ae.associate("127.0.0.1", port, ae_title="FERRO", ext_neg=ext_neg) as assoc:
        results = list(assoc.send_c_find(ds, model))
    statuses = [int(s.Status) for s, _ in results]
    return [i for s, i in results if int(s.Status) in (0xFF00, 0xFF01)], statuses


def ident(level, **keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def relational(uid, info=b"\x01"):
    item = SOPClassExtendedNegotiation()
    item.sop_class_uid = uid
    item.service_class_application_information = info
    return item


# --- the index ---------------------------------------------------------------------------------------------


def test_index_holds_decoded_names_of_every_character_set(node):
    archive = node[0]
    names = {r["PatientID"]: r["PatientName"] for r in archive.index.query(Query("PATIENT"))}
    assert names == {pid: name for pid, name, *_ in PATIENTS}


def test_index_levels_relational_keys_and_computed_attributes(node):
    index = node[0].index
    q = Query("STUDY", {"PatientName": condition("PN", "MULLER*")}, computed=("ModalitiesInStudy",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "SOPClassesInStudy"))  # fmt: skip
    rows = sorted(index.query(q), key=lambda r: r["StudyDate"])
    assert [r["StudyDate"] for r in rows] == ["20190314", "20210601"]
    assert rows[0]["ModalitiesInStudy"] == "CT\\NM" and rows[1]["ModalitiesInStudy"] == "CT\\PT"
    assert [r["NumberOfStudyRelatedSeries"] for r in rows] == [2, 2]
    assert [r["NumberOfStudyRelatedInstances"] for r in rows] == [4, 3]
    assert rows[0]["SOPClassesInStudy"] == "\\".join(sorted([CT, NM]))
    # a series key at the study level: ignored unless relational
    modality = {"Modality": condition("CS", "PT")}
    assert index.count(Query("STUDY", modality)) == 7
    assert {r["StudyInstanceUID"] for r in index.query(Query("STUDY", modality, relational=True))} == {
        study_uid(0, 2),
        study_uid(2, 2),
    }
    # an image key at the patient level
    pt = {"SOPClassUID": condition("UI", PT)}
    assert {r["PatientID"] for r in index.query(Query("PATIENT", pt, relational=True))} == {"P001", "P003"}
    # ModalitiesInStudy as a matching key (any of several values)
    nm_or_pt = Query("STUDY", {"ModalitiesInStudy": condition("CS", "NM\\PT")})
    assert index.count(nm_or_pt) == 5
    assert index.count(Query("SERIES", {"StudyInstanceUID": condition("UI", study_uid(0, 1))})) == 2
    assert index.count(Query("IMAGE", {"SeriesNumber": condition("IS", "2"), "Modality": condition("CS", "CT")})) == 3
    refs = list(index.instances(Query("STUDY", {"PatientID": condition("LO", "P003")})))
    assert len(refs) == 5 and all((node[0].root / r.path).exists() for r in refs)


def test_index_ranges_use_the_indexes(node):
    index = node[0].index
    assert index.count(Query("STUDY", {"StudyDate": condition("DA", "20200101-20221231")})) == 3
    assert index.count(Query("STUDY", {"StudyDate": condition("DA", "-20191231")})) == 1
    assert index.count(Query("STUDY", {"StudyTime": condition("TM", "2300-0100")})) == 2  # over midnight
    for q, index_name in [
        (Query("STUDY", {"PatientID": condition("LO", "P001")}), "study_patient"),
        (Query("STUDY", {"PatientName": condition("PN", "smi*")}), "study_name"),
        (Query("STUDY", {"StudyDate": condition("DA", "20200101-20221231")}), "study_date"),
        (Query("SERIES", {"StudyInstanceUID": condition("UI", study_uid(0, 1))}), "series_study"),
    ]:
        text, params = index.sql(q)
        conn = sqlite3.connect(str(node[0].root / "index.sqlite"))
        conn.create_function("fd_match", -1, lambda *a: 1)
        plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + text, params))
        conn.close()
        assert index_name in plan, (index_name, plan)


def test_extra_keys_from_configuration_and_an_older_schema_upgraded(tmp_path, corpus):
    ds = pydicom.dcmread(corpus[1][0].path)
    ds.PerformedProcedureStepDescription = "Bone scan"
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "x.dcm")
    archive = Archive(tmp_path / "a", durability="none", index_keys={"series": ["PerformedProcedureStepDescription"]})
    ae = AE("FERRO")
    ae.add_service(StorageSCP(archive))
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        assert not store("127.0.0.1", server.port, [tmp_path / "in"], called_ae="FERRO").failed
        archive.flush()
        q = Query("SERIES", {"PerformedProcedureStepDescription": condition("LO", "Bone*")})
        assert [r["PerformedProcedureStepDescription"] for r in archive.index.query(q)] == ["Bone scan"]
    finally:
        server.shutdown()
        archive.close()
    # version 1 had no PatientNameNorm: opening upgrades it in place and the names match again
    conn = sqlite3.connect(str(tmp_path / "a" / "index.sqlite"))
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.execute("UPDATE study SET PatientNameNorm = NULL")
    conn.commit()
    conn.close()
    with Archive(tmp_path / "a", durability="none") as archive:
        assert archive.index.count(Query("STUDY", {"PatientName": condition("PN", "MULLER^HANS")})) == 1
        assert archive.query("study", PatientID="P001")[0]["PatientName"] == "Müller^Hans"  # Archive.query stays


# --- C-FIND ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, level, keys, expected",
    [
        (PATIENT_ROOT_FIND, "PATIENT", {"PatientName": "*"}, 5),
        (PATIENT_ROOT_FIND, "STUDY", {"PatientID": "P001"}, 2),
        (PATIENT_ROOT_FIND, "SERIES", {"PatientID": "P001", "StudyInstanceUID": study_uid(0, 1)}, 2),
        (
            PATIENT_ROOT_FIND,
            "IMAGE",
            {"PatientID": "P002", "StudyInstanceUID": study_uid(1, 1), "SeriesInstanceUID": study_uid(1, 1) + ".1"},
            3,
        ),  # fmt: skip
        (STUDY_ROOT_FIND, "STUDY", {"StudyDate": "20230101-"}, 3),
        (STUDY_ROOT_FIND, "SERIES", {"StudyInstanceUID": study_uid(2, 2), "Modality": "NM"}, 1),
        (
            STUDY_ROOT_FIND,
            "IMAGE",
            {"StudyInstanceUID": study_uid(2, 1), "SeriesInstanceUID": study_uid(2, 1) + ".1", "InstanceNumber": "2"},
            1,
        ),  # fmt: skip
    ],
)
def test_find_at_every_level_of_both_models(node, model, level, keys, expected):
    matches, statuses = find(node[1], ident(level, **keys), model)
    assert statuses[-1] == 0 and len(matches) == expected
    assert all(m.QueryRetrieveLevel == level for m in matches)


def test_find_returns_requested_keys_computed_ones_and_empty_unknown_ones(node):
    q = ident("STUDY", PatientName="gomez*", PatientID="", StudyDate="", ModalitiesInStudy="", StudyInstanceUID="",
              NumberOfStudyRelatedInstances="", NumberOfStudyRelatedSeries="", PatientBirthDate="",
              PatientAge="", InstitutionAddress="")  # fmt: skip
    q.SpecificCharacterSet = "ISO_IR 100"
    (m,), statuses = find(node[1], q)
    assert statuses == [0xFF00, 0]
    assert str(m.PatientName) == "Gómez^José" and m.SpecificCharacterSet == "ISO_IR 100"  # fits the request's
    assert m.ModalitiesInStudy == "NM" and m.NumberOfStudyRelatedInstances == 2 and m.NumberOfStudyRelatedSeries == 1
    assert m.PatientBirthDate == "19900505" and m.RetrieveAETitle == "FERRO"
    assert m.PatientAge in (None, "") and m.InstitutionAddress in (None, "")  # not held: returned empty
    # a UTF-8 name that Latin-1 cannot hold comes back in ISO_IR 192
    (m,), _ = find(node[1], ident("STUDY", PatientID="P002", PatientName="", SpecificCharacterSet="ISO_IR 100"))
    assert str(m.PatientName) == "Łukasik^Zoë" and m.SpecificCharacterSet == "ISO_IR 192"


def test_pn_matching_policy_exact(node):
    service = node[2]
    try:
        service.settings.pn_matching = "exact"
        assert find(node[1], ident("STUDY", PatientName="muller*"))[0] == []
        assert len(find(node[1], ident("STUDY", PatientName="Müller*"))[0]) == 2
    finally:
        service.settings.pn_matching = "insensitive"


def test_relational_only_when_negotiated_and_ff01_for_keys_not_held(node):
    q = ident("STUDY", Modality="CT", StudyInstanceUID="")
    hierarchical, statuses = find(node[1], q)
    assert len(hierarchical) == 7 and statuses[0] == 0xFF01  # the series key took no part
    matches, statuses = find(node[1], q, ext_neg=[relational(STUDY_ROOT_FIND)])
    assert len(matches) == 4 and statuses[0] == 0xFF00
    # pynetdicom as the requestor: the reply grants relational queries
    pae = PynAE(ae_title="PYN")
    pae.add_requested_context(STUDY_ROOT_FIND)
    assoc = pae.associate("127.0.0.1", node[1], ae_title="FERRO", ext_neg=[relational(STUDY_ROOT_FIND, b"\x01\x00")])
    try:
        results = [s.Status for s, _ in assoc.send_c_find(q, STUDY_ROOT_FIND)]
    finally:
        assoc.release()
    assert results.count(0xFF00) == 4 and results[-1] == 0
    # a sequence key is not held: matched as universal, FF01
    seq = ident("STUDY", PatientID="P003")
    seq.ProcedureCodeSequence = [Dataset()]
    seq.ProcedureCodeSequence[0].CodeValue = "X"
    matches, statuses = find(node[1], seq)
    assert len(matches) == 2 and statuses[0] == 0xFF01


def test_combined_date_time_when_negotiated(node):
    q = ident("STUDY", StudyDate="20221230-20230101", StudyTime="1000-1300", StudyInstanceUID="")
    # separately: 2022-12-31 00:00:01 fails the time range, 2023-01-01 12:00 passes both
    assert [m.StudyInstanceUID for m in find(node[1], q)[0]] == [study_uid(2, 2)]
    # combined (C.2.2.2.5.1): 2022-12-30 10:00 to 2023-01-01 13:00, so both
    both = find(node[1], q, ext_neg=[relational(STUDY_ROOT_FIND, b"\x00\x01")])[0]
    assert {m.StudyInstanceUID for m in both} == {study_uid(2, 1), study_uid(2, 2)}


def test_result_limit_ends_with_a700_and_a_log_line(node, caplog):
    service = node[2]
    try:
        service.settings.max_results = 3
        matches, statuses = find(node[1], ident("STUDY", StudyInstanceUID=""))
        assert len(matches) == 3 and statuses[-1] == 0xA700
        assert "result limit" in caplog.text
        matches, statuses = find(node[1], ident("STUDY", PatientID="P001"))
        assert len(matches) == 2 and statuses[-1] == 0
    finally:
        service.settings.max_results = 0


@pytest.mark.parametrize(
    "model, level, status",
    [(STUDY_ROOT_FIND, "PATIENT", 0xA900), (STUDY_ROOT_FIND, "", 0xA900), (PATIENT_ROOT_FIND, "FRAME", 0xA900)],
)
def test_a_level_that_does_not_fit_the_model_is_a900(node, model, level, status):
    q = ident(level, PatientID="P001") if level else ident("STUDY")
    if not level:
        del q.QueryRetrieveLevel
    assert find(node[1], q, model)[1] == [status]


# --- C-MOVE and C-GET --------------------------------------------------------------------------------------


def move(port, ds, dest="DEST", model=STUDY_ROOT_MOVE):
    ae = AE("SCU")
    ae.add_requested_context(model)
    with ae.associate("127.0.0.1", port, ae_title="FERRO") as assoc:
        return list(assoc.send_c_move(ds, dest, model))


def same_instance(a: Dataset, b: Dataset) -> None:
    for kw in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID",
               "PatientName", "StudyDate", "Modality", "InstanceNumber", "Rows", "Columns"):  # fmt: skip
        assert str(a.get(kw)) == str(b.get(kw)), kw
    assert a.PixelData == b.PixelData


def test_move_at_every_level_sends_what_was_stored(node, corpus):
    by_uid = {i.sop_uid: pydicom.dcmread(i.path) for i in corpus[1]}
    received = node[3]
    s01, s41 = study_uid(0, 1), study_uid(4, 1)
    for model, q, n in [
        (PATIENT_ROOT_MOVE, ident("PATIENT", PatientID="P001"), 7),
        (STUDY_ROOT_MOVE, ident("STUDY", StudyInstanceUID=f"{study_uid(2, 1)}\\{study_uid(3, 1)}"), 5),
        (STUDY_ROOT_MOVE, ident("SERIES", StudyInstanceUID=s01, SeriesInstanceUID=s01 + ".2"), 2),
        (PATIENT_ROOT_MOVE, ident("IMAGE", PatientID="P005", StudyInstanceUID=s41, SeriesInstanceUID=s41 + ".1",
                                  SOPInstanceUID=s41 + ".1.2"), 1),
    ]:  # fmt: skip
        received.clear()
        results = move(node[1], q, model=model)
        final = results[-1][0]
        assert final.Status == 0 and final.NumberOfCompletedSuboperations == n
        pending = [s for s, _ in results[:-1]]
        assert [s.NumberOfRemainingSuboperations for s in pending] == list(range(n - 1, 0, -1))
        assert len(received) == n
        for ds in received:
            same_instance(ds, by_uid[ds.SOPInstanceUID])


def test_move_failures(node):
    unknown = move(node[1], ident("STUDY", StudyInstanceUID=study_uid(0, 1)), dest="NOWHERE")
    assert [s.Status for s, _ in unknown] == [0xA801]
    assert move(node[1], ident("STUDY"))[-1][0].Status == 0xA900  # no key: not the whole archive
    nothing = move(node[1], ident("STUDY", StudyInstanceUID="1.2.3.4"))
    assert nothing[-1][0].Status == 0 and nothing[-1][0].NumberOfCompletedSuboperations == 0
    service = node[2]
    try:
        service.settings.no_match_status = 0xA701  # eNTEGRA's quirk, for its device profile
        assert move(node[1], ident("STUDY", StudyInstanceUID="1.2.3.4"))[-1][0].Status == 0xA701
    finally:
        service.settings.no_match_status = 0


def test_get_on_the_same_association_and_an_instance_without_context_fails(node, corpus):
    by_uid = {i.sop_uid: pydicom.dcmread(i.path) for i in corpus[1]}
    got: list[Dataset] = []
    ae = AE("SCU")
    ae.add_requested_context(PATIENT_ROOT_GET)
    ae.add_requested_context(STUDY_ROOT_GET)
    ae.add_requested_context(CT, roles=(False, True))
    ae.add_requested_context(NM, roles=(False, True))  # no PET context
    handlers = [(evt.EVT_C_STORE, lambda e: got.append(e.dataset) or 0)]
    with ae.associate("127.0.0.1", node[1], ae_title="FERRO", evt_handlers=handlers) as assoc:
        results = list(assoc.send_c_get(ident("STUDY", StudyInstanceUID=study_uid(0, 1)), STUDY_ROOT_GET))
        assert results[-1][0].Status == 0 and results[-1][0].NumberOfCompletedSuboperations == 4
        mixed = list(assoc.send_c_get(ident("PATIENT", PatientID="P003"), PATIENT_ROOT_GET))
    final, failed_list = mixed[-1]
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (4, 1)
    assert failed_list.FailedSOPInstanceUIDList == study_uid(2, 2) + ".1.1"  # the PET instance
    assert len(got) == 8
    for ds in got:
        same_instance(ds, by_uid[ds.SOPInstanceUID])


def test_move_to_an_archive_converts_to_what_the_destination_accepts(node, tmp_path):
    """The PT files are stored in Implicit VR LE; a destination accepting only Explicit VR LE gets them converted."""
    dest_archive = Archive(tmp_path / "dest", durability="none")
    dest = AE("DEST2")
    dest.add_service(StorageSCP(dest_archive, transfer_syntaxes=["1.2.840.10008.1.2.1"]))
    server = dest.start_server(("127.0.0.1", 0), block=False)
    node[2].ae.add_peer("DEST2", "127.0.0.1", server.port)
    try:
        results = move(node[1], ident("STUDY", StudyInstanceUID=study_uid(0, 2)), dest="DEST2")
        assert results[-1][0].Status == 0 and results[-1][0].NumberOfCompletedSuboperations == 3
        dest_archive.flush()
        rows = dest_archive.query("instance")
        assert {r["TransferSyntaxUID"] for r in rows} == {"1.2.840.10008.1.2.1"}
    finally:
        server.shutdown()
        dest_archive.close()
        shutil.rmtree(tmp_path / "dest", ignore_errors=True)


def test_contexts_of_the_service():
    specs = QueryRetrieveSCP(type("A", (), {"index": None})()).contexts()
    uids = {c.abstract_syntax for c in specs}
    assert {
        PATIENT_ROOT_FIND,
        PATIENT_ROOT_MOVE,
        PATIENT_ROOT_GET,
        STUDY_ROOT_FIND,
        STUDY_ROOT_MOVE,
        STUDY_ROOT_GET,
    } <= uids
    ct = next(c for c in specs if c.abstract_syntax == CT)
    assert ct.scp_role and ct.scu_role
    with pytest.raises(ValueError):
        QRSettings(pn_matching="fuzzy")
    assert len(STUDIES) == 7
