"""GB/T 26875.3-2011 code tables (spec §1, §2, §4) as enums with English and Chinese names.

Unknown codes never raise: `lookup()` returns the bare int, and `name_of()` falls back to
`reserved`/`user_defined` by range.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

_E = TypeVar("_E", bound="CodeEnum")


class CodeEnum(IntEnum):
    """An IntEnum whose members also carry their Chinese name (`zh`)."""

    zh: str

    def __new__(cls, value: int, zh: str = "") -> CodeEnum:
        member = int.__new__(cls, value)
        member._value_ = value
        member.zh = zh
        return member


def lookup(enum: type[_E], code: int) -> _E | int:
    try:
        return enum(code)
    except ValueError:
        return code


def _user_range(enum: type[CodeEnum]) -> range:
    # Table 3 leaves type flag 255 unassigned (spec §2); commands 128-255 are all user-defined
    return range(128, 255) if enum is TypeFlag else range(128, 256)


def name_of(enum: type[CodeEnum], code: int) -> str:
    member = lookup(enum, code)
    if isinstance(member, CodeEnum):
        return member.name.lower()
    return "user_defined" if code in _user_range(enum) else "reserved"


def zh_of(enum: type[CodeEnum], code: int) -> str:
    member = lookup(enum, code)
    if isinstance(member, CodeEnum):
        return member.zh
    return "用户自定义" if code in _user_range(enum) else "预留"


class Command(CodeEnum):
    CONTROL = 1, "控制命令"
    SEND_DATA = 2, "发送数据"
    CONFIRM = 3, "确认"
    REQUEST = 4, "请求"
    REPLY = 5, "应答"
    DENY = 6, "否认"


def command_is_known(code: int) -> bool:
    """Commands 1-6 and the user-defined 128-255; 0 and 7-127 are reserved (a check error, §6)."""
    return 1 <= code <= 6 or code >= 128


class TypeFlag(CodeEnum):
    FACILITY_SYSTEM_STATUS = 1, "上传建筑消防设施系统状态"
    FACILITY_COMPONENT_STATUS = 2, "上传建筑消防设施部件运行状态"
    FACILITY_ANALOG_VALUE = 3, "上传建筑消防设施部件模拟量值"
    FACILITY_OPERATION = 4, "上传建筑消防设施操作信息"
    FACILITY_SOFTWARE_VERSION = 5, "上传建筑消防设施软件版本"
    FACILITY_SYSTEM_CONFIG = 6, "上传建筑消防设施系统配置情况"
    FACILITY_COMPONENT_CONFIG = 7, "上传建筑消防设施部件配置情况"
    FACILITY_SYSTEM_TIME = 8, "上传建筑消防设施系统时间"
    UITD_STATUS = 21, "上传用户信息传输装置运行状态"
    UITD_OPERATION = 24, "上传用户信息传输装置操作信息"
    UITD_SOFTWARE_VERSION = 25, "上传用户信息传输装置软件版本"
    UITD_CONFIG = 26, "上传用户信息传输装置配置情况"
    UITD_SYSTEM_TIME = 28, "上传用户信息传输装置系统时间"
    READ_FACILITY_SYSTEM_STATUS = 61, "读建筑消防设施系统状态"
    READ_FACILITY_COMPONENT_STATUS = 62, "读建筑消防设施部件运行状态"
    READ_FACILITY_ANALOG_VALUE = 63, "读建筑消防设施部件模拟量值"
    READ_FACILITY_OPERATION_RECORDS = 64, "读建筑消防设施操作信息"
    READ_FACILITY_SOFTWARE_VERSION = 65, "读建筑消防设施软件版本"
    READ_FACILITY_SYSTEM_CONFIG = 66, "读建筑消防设施系统配置情况"
    READ_FACILITY_COMPONENT_CONFIG = 67, "读建筑消防设施部件配置情况"
    READ_FACILITY_SYSTEM_TIME = 68, "读建筑消防设施系统时间"
    READ_UITD_STATUS = 81, "读用户信息传输装置运行状态"
    READ_UITD_OPERATION_RECORDS = 84, "读用户信息传输装置操作信息记录"
    READ_UITD_SOFTWARE_VERSION = 85, "读用户信息传输装置软件版本"
    READ_UITD_CONFIG = 86, "读用户信息传输装置配置情况"
    READ_UITD_SYSTEM_TIME = 88, "读用户信息传输装置系统时间"
    INIT_UITD = 89, "初始化用户信息传输装置"
    SYNC_UITD_CLOCK = 90, "同步用户信息传输装置时钟"
    DUTY_CHECK = 91, "查岗命令"


# A read request (cmd 4) is answered (cmd 5) with the matching upload type (spec §3).
READ_REPLY_TYPE: dict[int, int] = {
    61: 1,
    62: 2,
    63: 3,
    64: 4,
    65: 5,
    66: 6,
    67: 7,
    68: 8,
    81: 21,
    84: 24,
    85: 25,
    86: 26,
    88: 28,
}


class SystemType(CodeEnum):
    GENERAL = 0, "通用"
    FIRE_ALARM_SYSTEM = 1, "火灾报警系统"
    FIRE_LINKAGE_CONTROLLER = 10, "消防联动控制器"
    HYDRANT_SYSTEM = 11, "消火栓系统"
    AUTOMATIC_SPRINKLER = 12, "自动喷水灭火系统"
    GAS_EXTINGUISHING = 13, "气体灭火系统"
    WATER_SPRAY_PUMP = 14, "水喷雾灭火系统(泵启动方式)"
    WATER_SPRAY_PRESSURE_VESSEL = 15, "水喷雾灭火系统(压力容器启动方式)"
    FOAM_EXTINGUISHING = 16, "泡沫灭火系统"
    DRY_POWDER_EXTINGUISHING = 17, "干粉灭火系统"
    SMOKE_CONTROL = 18, "防烟排烟系统"
    FIRE_DOORS_AND_SHUTTERS = 19, "防火门及卷帘系统"
    FIRE_ELEVATOR = 20, "消防电梯"
    EMERGENCY_BROADCAST = 21, "消防应急广播"
    EMERGENCY_LIGHTING = 22, "消防应急照明和疏散指示系统"
    FIRE_POWER_SUPPLY = 23, "消防电源"
    FIRE_TELEPHONE = 24, "消防电话"


class ComponentType(CodeEnum):
    GENERAL = 0, "通用"
    FIRE_ALARM_CONTROLLER = 1, "火灾报警控制器"
    COMBUSTIBLE_GAS_DETECTOR = 10, "可燃气体探测器"
    POINT_COMBUSTIBLE_GAS_DETECTOR = 11, "点型可燃气体探测器"
    STANDALONE_COMBUSTIBLE_GAS_DETECTOR = 12, "独立式可燃气体探测器"
    LINE_COMBUSTIBLE_GAS_DETECTOR = 13, "线型可燃气体探测器"
    ELECTRICAL_FIRE_MONITOR = 16, "电气火灾监控报警器"
    RESIDUAL_CURRENT_DETECTOR = 17, "剩余电流式电气火灾监控探测器"
    TEMPERATURE_ELECTRICAL_FIRE_DETECTOR = 18, "测温式电气火灾监控探测器"
    DETECTION_LOOP = 21, "探测回路"
    FIRE_DISPLAY_PANEL = 22, "火灾显示盘"
    MANUAL_CALL_POINT = 23, "手动火灾报警按钮"
    HYDRANT_BUTTON = 24, "消火栓按钮"
    FIRE_DETECTOR = 25, "火灾探测器"
    HEAT_DETECTOR = 30, "感温火灾探测器"
    POINT_HEAT_DETECTOR = 31, "点型感温火灾探测器"
    POINT_HEAT_DETECTOR_S = 32, "点型感温火灾探测器(S型)"
    POINT_HEAT_DETECTOR_R = 33, "点型感温火灾探测器(R型)"
    LINE_HEAT_DETECTOR = 34, "线型感温火灾探测器"
    LINE_HEAT_DETECTOR_S = 35, "线型感温火灾探测器(S型)"
    LINE_HEAT_DETECTOR_R = 36, "线型感温火灾探测器(R型)"
    FIBRE_OPTIC_HEAT_DETECTOR = 37, "光纤感温火灾探测器"
    SMOKE_DETECTOR = 40, "感烟火灾探测器"
    POINT_IONISATION_SMOKE_DETECTOR = 41, "点型离子感烟火灾探测器"
    POINT_PHOTOELECTRIC_SMOKE_DETECTOR = 42, "点型光电感烟火灾探测器"
    LINE_BEAM_SMOKE_DETECTOR = 43, "线型光束感烟火灾探测器"
    ASPIRATING_SMOKE_DETECTOR = 44, "吸气式感烟火灾探测器"
    MULTI_SENSOR_FIRE_DETECTOR = 50, "复合式火灾探测器"
    SMOKE_HEAT_DETECTOR = 51, "复合式感烟感温火灾探测器"
    LIGHT_HEAT_DETECTOR = 52, "复合式感光感温火灾探测器"
    LIGHT_SMOKE_DETECTOR = 53, "复合式感光感烟火灾探测器"
    UV_FLAME_DETECTOR = 61, "紫外火焰探测器"
    IR_FLAME_DETECTOR = 62, "红外火焰探测器"
    LIGHT_SENSING_FIRE_DETECTOR = 69, "感光火灾探测器"
    GAS_DETECTOR = 74, "气体探测器"
    VIDEO_FIRE_DETECTOR = 78, "图像摄像方式火灾探测器"
    ACOUSTIC_FIRE_DETECTOR = 79, "感声火灾探测器"
    GAS_EXTINGUISHING_CONTROLLER = 81, "气体灭火控制器"
    FIRE_ELECTRICAL_CONTROL_DEVICE = 82, "消防电气控制装置"
    GRAPHIC_DISPLAY = 83, "消防控制室图形显示装置"
    MODULE = 84, "模块"
    INPUT_MODULE = 85, "输入模块"
    OUTPUT_MODULE = 86, "输出模块"
    INPUT_OUTPUT_MODULE = 87, "输入/输出模块"
    RELAY_MODULE = 88, "中继模块"
    FIRE_PUMP = 91, "消防水泵"
    FIRE_WATER_TANK = 92, "消防水箱"
    SPRINKLER_PUMP = 95, "喷淋泵"
    WATER_FLOW_INDICATOR = 96, "水流指示器"
    SIGNAL_VALVE = 97, "信号阀"
    ALARM_VALVE = 98, "报警阀"
    PRESSURE_SWITCH = 99, "压力开关"
    VALVE_ACTUATOR = 101, "阀驱动装置"
    FIRE_DOOR = 102, "防火门"
    FIRE_DAMPER = 103, "防火阀"
    VENTILATION_AIR_CONDITIONING = 104, "通风空调"
    FOAM_CONCENTRATE_PUMP = 105, "泡沫液泵"
    PIPE_NETWORK_SOLENOID_VALVE = 106, "管网电磁阀"
    SMOKE_EXHAUST_FAN = 111, "防烟排烟风机"
    SMOKE_EXHAUST_FIRE_DAMPER = 113, "排烟防火阀"
    NORMALLY_CLOSED_AIR_SUPPLY_OUTLET = 114, "常闭送风口"
    SMOKE_EXHAUST_OUTLET = 115, "排烟口"
    SMOKE_CURTAIN = 116, "电控挡烟垂壁"
    FIRE_SHUTTER_CONTROLLER = 117, "防火卷帘控制器"
    FIRE_DOOR_MONITOR = 118, "防火门监控器"
    ALARM_SOUNDER = 121, "警报装置"


class AnalogType(CodeEnum):
    """Analog quantities (STD Table 6): physical value = raw int16 x `ANALOG_SCALE[type][0]`."""

    UNUSED = 0, "未用"
    EVENT_COUNT = 1, "事件计数"
    HEIGHT = 2, "高度"
    TEMPERATURE = 3, "温度"
    PRESSURE_MPA = 4, "压力"
    PRESSURE_KPA = 5, "压力"
    GAS_CONCENTRATION = 6, "气体浓度"
    TIME = 7, "时间"
    VOLTAGE = 8, "电压"
    CURRENT = 9, "电流"
    FLOW = 10, "流量"
    AIR_VOLUME = 11, "风量"
    WIND_SPEED = 12, "风速"


# (minimum unit, unit symbol, valid physical range)
ANALOG_SCALE: dict[int, tuple[float, str, tuple[float, float]]] = {
    1: (1.0, "件", (0, 32000)),
    2: (0.01, "m", (0, 320)),
    3: (0.1, "°C", (-273, 3200)),
    4: (0.1, "MPa", (0, 3200)),
    5: (0.1, "kPa", (0, 3200)),
    6: (0.1, "%LEL", (0, 100)),
    7: (1.0, "s", (0, 32000)),
    8: (0.1, "V", (0, 3200)),
    9: (0.1, "A", (0, 3200)),
    10: (0.1, "L/s", (0, 3200)),
    11: (0.1, "m³/min", (0, 3200)),
    12: (1.0, "m/s", (0, 20)),
}


# Bit names, index = bit number (spec §4.1-§4.4). Bit 0 set means normal; clear means test mode.
SYSTEM_STATUS_BITS = (
    "normal",
    "fire",
    "fault",
    "disabled",
    "supervisory",
    "started",
    "feedback",
    "delay",
    "main_power_fault",
    "backup_power_fault",
    "bus_fault",
    "manual",
    "config_changed",
    "reset",
)
COMPONENT_STATUS_BITS = (*SYSTEM_STATUS_BITS[:8], "power_fault")
UITD_STATUS_BITS = (
    "normal",
    "fire",
    "fault",
    "main_power_fault",
    "backup_power_fault",
    "center_link_fault",
    "monitor_line_fault",
)
FACILITY_OPERATION_BITS = (
    "reset",
    "silence",
    "manual_alarm",
    "alarm_cleared",
    "self_test",
    "acknowledge",
    "test",
)
UITD_OPERATION_BITS = (*FACILITY_OPERATION_BITS[:5], "duty_check_answered", "test")

BIT_ZH: dict[str, str] = {
    "normal": "正常",
    "fire": "火警",
    "fault": "故障",
    "disabled": "屏蔽",
    "supervisory": "监管",
    "started": "启动",
    "feedback": "反馈",
    "delay": "延时",
    "main_power_fault": "主电故障",
    "backup_power_fault": "备电故障",
    "bus_fault": "总线故障",
    "manual": "手动",
    "config_changed": "配置改变",
    "reset": "复位",
    "power_fault": "电源故障",
    "center_link_fault": "与监控中心通信信道故障",
    "monitor_line_fault": "监测连接线路故障",
    "silence": "消音",
    "manual_alarm": "手动报警",
    "alarm_cleared": "警情消除",
    "self_test": "自检",
    "acknowledge": "确认",
    "test": "测试",
    "duty_check_answered": "查岗应答",
}

FIRE_BIT = 1 << 1
FAULT_BIT = 1 << 2
NORMAL_BIT = 1 << 0

_FLAG_CACHE: dict[tuple[tuple[str, ...], int], tuple[str, ...]] = {}


def flag_names(names: tuple[str, ...], value: int) -> tuple[str, ...]:
    """Names of the set bits in bit order; reserved bits appear as `bit<N>`."""
    key = (names, value)
    hit = _FLAG_CACHE.get(key)
    if hit is None:
        hit = tuple(
            names[bit] if bit < len(names) else f"bit{bit}"
            for bit in range(value.bit_length())
            if value >> bit & 1
        )
        if len(_FLAG_CACHE) < 4096:
            _FLAG_CACHE[key] = hit
    return hit
